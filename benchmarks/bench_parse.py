"""Throughput of parse + roles + quotes, on the bundled samples and on the dev split (rendered as text files).

    .venv/bin/python benchmarks/bench_parse.py [--repeat 5]
"""
import argparse, time
import devdata
from flexxray_nb.parse import read_transcript, parse_text, find_transcripts
from flexxray_nb.roles import assign_roles
from flexxray_nb.quotes import extract_quotes

def bench(name, items, load, repeat):
    "Best of `repeat` runs over `items`: transcripts/s and words/s for the whole stage chain."
    best, words, quotes = float('inf'), 0, 0
    for _ in range(repeat):
        t0 = time.perf_counter(); words = quotes = 0
        for it in items:
            tr = assign_roles(load(it))
            words += len(tr.text.split()); quotes += len(extract_quotes(tr))
        best = min(best, time.perf_counter() - t0)
    print(f'{name:28} {len(items):5d} transcripts {words:9,d} words  {best:6.2f} s  '
          f'{len(items)/best:7.1f} transcripts/s  {words/best:11,.0f} words/s  {quotes:6d} expert quotes')

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeat', type=int, default=5)
    a = ap.parse_args()
    samples = find_transcripts(devdata.ROOT / 'flexxray_nb' / 'samples')
    bench('bundled samples (all formats)', samples, read_transcript, a.repeat)
    if devdata.available():
        texts = [devdata.render(r) for r in devdata.records()]
        bench('dev split (94, as .txt)', texts, parse_text, a.repeat)
    else: print('no evaluation data found: dev split skipped')

if __name__ == '__main__':
    main()
