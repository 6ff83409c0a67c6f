"""Throughput of parse + roles + quotes, on the bundled samples and on the dev split (rendered as text files); the time
of roles on a transcript with 20,000 speakers (linear: the goal is under 2 s); with --memory, the peak memory of
`flexxray parse` on a .docx that inflates to 1 GB (refused from its zip directory) and on one with 150 MB of text XML
(within the limits: streamed).

    .venv/bin/python benchmarks/bench_parse.py [--repeat 5] [--memory]
"""
import argparse, os, subprocess, sys, tempfile, time, zipfile
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

def many_speakers(n: int = 20_000, repeat: int = 3):
    "Parse and roles on one transcript where each of `n` speakers says one line: best of `repeat`."
    text = ''.join(f'Person {i}: {"What about the plant?" if i % 2 else "We ran it for years, with three shifts."}\n' for i in range(n))
    best = dict(parse=float('inf'), roles=float('inf'), parse_cpu=float('inf'), roles_cpu=float('inf'))
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time(); tr = parse_text(text)
        w1, c1 = time.perf_counter(), time.process_time(); assign_roles(tr)
        w2, c2 = time.perf_counter(), time.process_time()
        for k, v in dict(parse=w1 - w0, roles=w2 - w1, parse_cpu=c1 - c0, roles_cpu=c2 - c1).items(): best[k] = min(best[k], v)
    print(f"{n:,} speakers, one turn each: parse {best['parse']:.2f} s, roles {best['roles']:.2f} s wall "
          f"({best['parse_cpu']:.2f} s / {best['roles_cpu']:.2f} s CPU; goal: roles under 2 s)")

def docx_of(path, mb: int, paragraph: bytes):
    "A .docx whose document.xml is `mb` MB of `paragraph` repeated (compressed: a few MB on disk)."
    w = 'http://schemas.openxmlformats.org/wordprocessingml/2006/main'
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr('[Content_Types].xml', 'x')
        with z.open('word/document.xml', 'w', force_zip64=True) as f:
            f.write(f'<w:document xmlns:w="{w}"><w:body>'.encode())
            for _ in range(mb): f.write(paragraph * (1_000_000 // len(paragraph) + 1))
            f.write(b'</w:body></w:document>')

def peak_memory():
    "Peak RSS of `flexxray parse` on an inflating .docx and on a large one within the limits."
    import psutil
    flexxray = os.path.join(os.path.dirname(sys.executable), 'flexxray')
    long = b'<w:p><w:r><w:rPr><w:b/></w:rPr><w:t>Jane Roe:</w:t></w:r><w:r><w:t xml:space="preserve"> ' + b'word ' * 2000 + b'</w:t></w:r></w:p>'
    with tempfile.TemporaryDirectory() as d:
        for name, mb, para in [('1 GB of XML (over the limit)', 1000, b'<w:p><w:r><w:t>a</w:t></w:r></w:p>'),
                               ('150 MB of XML, 15k long turns', 150, long)]:
            path = os.path.join(d, 'x.docx'); docx_of(path, mb, para)
            p = subprocess.Popen([flexxray, 'parse', path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            proc, peak, t0 = psutil.Process(p.pid), 0, time.perf_counter()
            while p.poll() is None:
                try: peak = max(peak, proc.memory_info().rss)
                except psutil.Error: break
                time.sleep(0.01)
            err = p.stderr.read().decode().strip()
            print(f'.docx, {os.path.getsize(path) / 1e6:.1f} MB on disk, {name}: peak RSS {peak / 1e6:.0f} MB, '
                  f'{time.perf_counter() - t0:.1f} s{"; " + err.split(": ", 2)[-1] if err else ""}')

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeat', type=int, default=5)
    ap.add_argument('--memory', action='store_true', help='also measure peak memory on large .docx files (about a minute)')
    a = ap.parse_args()
    many_speakers()
    if a.memory: peak_memory()
    samples = find_transcripts(devdata.ROOT / 'flexxray_nb' / 'samples')
    bench('bundled samples (all formats)', samples, read_transcript, a.repeat)
    if devdata.available():
        texts = [devdata.render(r) for r in devdata.records()]
        bench('dev split (94, as .txt)', texts, parse_text, a.repeat)
    else: print('no evaluation data found: dev split skipped')

if __name__ == '__main__':
    main()
