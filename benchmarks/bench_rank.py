"""Ranking latency at scale: index build time and time per question over 1,000 transcripts' worth of expert quotes.

    .venv/bin/python benchmarks/bench_rank.py [--transcripts 1000] [--repeat 3]

The bundled samples' expert quotes (`load_corpus`) are copied until there are as many calls as `--transcripts`; each
copy is a new call (its own file and ids) whose quotes and question contexts have about one word in ten swapped for
another word of the corpus, so the index does not see the same text a thousand times. The questions are FlexXray's
company and grid questions, with their synonyms. `rank_quotes` is timed beside plain BM25 (the index's scores and a
sort); `rank_turns` is timed on the samples' own transcripts.
"""
import argparse, dataclasses, random, statistics, time
import numpy as np
from flexxray_nb.companies import load_company
from flexxray_nb.quotes import load_corpus
from flexxray_nb.rank import PassageIndex, TurnIndex, rank_quotes, rank_turns, query_tokens

def perturb(text: str, vocab: list[str], rng: random.Random, rate: float = 0.1) -> str:
    "`text` with about `rate` of its words replaced by words of `vocab`."
    return ' '.join(rng.choice(vocab) if rng.random() < rate else w for w in text.split())

def scaled_quotes(quotes, n_calls: int, n_sample: int, seed: int = 0) -> list:
    "The quotes of `n_sample` calls copied and perturbed into `n_calls` calls' worth."
    rng = random.Random(seed)
    vocab = sorted({w for q in quotes for w in q.text.split()})
    out = list(quotes)
    for k in range(1, -(-n_calls // n_sample)):
        out += [dataclasses.replace(q, id=f'{q.id}~{k}', transcript_id=f'{q.transcript_id}~{k}', file=f'copy{k}/{q.file}',
                                    text=perturb(q.text, vocab, rng), context=perturb(q.context, vocab, rng))
                for q in quotes]
    return out

def timed(f, repeat: int):
    "Best wall time of `repeat` runs of `f()` in seconds, and its result."
    best, out = float('inf'), None
    for _ in range(repeat):
        t0 = time.perf_counter(); out = f(); best = min(best, time.perf_counter() - t0)
    return best, out

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--transcripts', type=int, default=1000)
    ap.add_argument('--repeat', type=int, default=3)
    a = ap.parse_args()
    company = load_company('flexxray')
    transcripts, quotes = load_corpus(company.transcript_dir())
    calls = [t for t in transcripts if t.ok]
    corpus = scaled_quotes(quotes, a.transcripts, len(calls))
    n_calls = len(corpus) // len(quotes) * len(calls)
    questions = company.questions + company.grid
    print(f'{len(calls)} sample calls, {len(quotes)} expert quotes -> {n_calls} calls, {len(corpus):,} quotes, '
          f'{sum(len(q.text.split()) for q in corpus):,} words; {len(questions)} questions')

    t_index, index = timed(lambda: PassageIndex([q.text for q in corpus]), 1)
    t_ctx, _ = timed(lambda: index.context_index([q.context for q in corpus]), 1)
    print(f'passage index build        {t_index:8.2f} s   ({len(corpus) / t_index:,.0f} quotes/s)')
    print(f'context index build        {t_ctx:8.2f} s   (first rank_quotes call; kept on the passage index)')

    def plain(q): s = index.scores(query_tokens(q.question, q.synonyms)); return np.argsort(-s, kind='stable')[:50]
    for name, rank in (('plain BM25 (scores + sort)', plain),
                       ('rank_quotes, top 50', lambda q: rank_quotes(q.question, corpus, 50, q.synonyms, index)),
                       ('rank_quotes, all ranked',
                        lambda q: rank_quotes(q.question, corpus, len(corpus), q.synonyms, index))):
        times = [timed(lambda: rank(q), a.repeat)[0] for q in questions]
        print(f'{name:26} {1000 * statistics.median(times):8.1f} ms per question (median; max {1000 * max(times):.1f} ms)')

    builds, per_q = [], []
    for tr in calls:
        t, ti = timed(lambda: TurnIndex(tr), 1)
        builds.append(t / max(len(tr.turns), 1))
        per_q += [timed(lambda: rank_turns(q.question, tr, ('expert',), 10, q.synonyms, ti), a.repeat)[0]
                  for q in questions]
    print(f'TurnIndex build            {1000 * statistics.median(builds):8.2f} ms per turn '
          f'(median over {len(calls)} calls)')
    print(f'rank_turns, top 10         {1000 * statistics.median(per_q):8.2f} ms per question per call (median)')

if __name__ == '__main__':
    main()
