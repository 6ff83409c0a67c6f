"""Ranking latency at scale: index build time and time per question over 1,000 transcripts' worth of expert quotes.

    .venv/bin/python benchmarks/bench_rank.py [--transcripts 1000] [--repeat 3]

The bundled samples' expert quotes (`load_corpus`) are copied until there are as many calls as `--transcripts`; each
copy is a new call (its own file and ids) whose quotes and question contexts have about one word in ten swapped for
another word of the corpus, so the index does not see the same text a thousand times. The questions are FlexXray's
company and grid questions, with their synonyms. `rank_quotes` is timed beside plain BM25 (the index's scores and a
sort); `rank_turns` is timed on the samples' own transcripts.

Then `Calls.ask` (the notebook's and the panel's Ask box) over as many calls: the sample transcripts copied the same way
(every copy a new call, about one word in ten of its turns swapped), loaded into `Calls` (passages of every speaker, the
experts' index built once), and asked the company's questions without their synonyms, ad-hoc questions, and one no call
discusses; each ask is the whole answer an analyst sees: verdict, ranked quotes, and each quote's context. Then asks
narrowed to one expert and to one call, the first asks of interviewers' and everyone's passages (each builds that
role's index, once), and the view across experts. `--ask-only` skips the ranking figures above.
"""
import argparse, dataclasses, random, re, statistics, time
import numpy as np
import psutil
from flexxray_nb.companies import load_company
from flexxray_nb.quotes import load_corpus
from baselines import PassageIndex, TurnIndex, rank_quotes, rank_turns, query_tokens
from flexxray_nb.explore import Calls

ADHOC = ['What do customers say about price increases?', 'Who thinks the market is smaller than people assume?',
         'What happens to a plant when a recall hits?', 'How fast is the turnaround?',
         'How do lithium brine royalties in Chile affect battery recycling margins?']  # the last: no call discusses it

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

def perturbed_call(tr, k: int, vocab: list[str], rng: random.Random, rate: float = 0.1):
    "A transcript copied as call `k`: its own file and id, about `rate` of the words of its turns swapped, turns re-spanned."
    parts, turns, pos, at = [], [], 0, 0
    for t in tr.turns:
        body = re.sub(r'\S+', lambda m: rng.choice(vocab) if rng.random() < rate else m.group(), tr.text[t.start:t.end])
        start = at + t.start - pos
        parts += [tr.text[pos:t.start], body]
        turns.append(dataclasses.replace(t, start=start, end=start + len(body)))
        pos, at = t.end, start + len(body)
    return dataclasses.replace(tr, file=f'copy{k}/{tr.file}', id=f'{tr.id}~{k}', text=''.join(parts) + tr.text[pos:], turns=turns)

def scaled_calls(calls, n_calls: int, seed: int = 0) -> list:
    "The sample transcripts and perturbed copies of them, as many calls as `n_calls` rounded up to whole copies."
    rng = random.Random(seed)
    vocab = sorted({w for tr in calls for w in tr.text.split()})
    return list(calls) + [perturbed_call(tr, k, vocab, rng) for k in range(1, -(-n_calls // len(calls))) for tr in calls]

def timed(f, repeat: int):
    "Best wall time of `repeat` runs of `f()` in seconds, and its result."
    best, out = float('inf'), None
    for _ in range(repeat):
        t0 = time.perf_counter(); out = f(); best = min(best, time.perf_counter() - t0)
    return best, out

def ranking(a, company, calls, quotes):
    "Index build and ranking latency of `rank_quotes` and `rank_turns` over `a.transcripts` calls' worth of quotes."
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

def latency(name: str, asks, repeat: int):
    "Print the median and worst of the best-of-`repeat` wall time of each ask (a function of nothing)."
    times = [timed(f, repeat)[0] for f in asks]
    print(f'{name:40} {1000 * statistics.median(times):7.1f} ms median, {1000 * max(times):7.1f} ms max ({len(times)} asks)')

def asking(a, company, calls):
    "`Calls.ask` latency over `a.transcripts` calls, once the index is built; filtered asks, other roles, the stances view."
    proc, rss0 = psutil.Process(), psutil.Process().memory_info().rss
    t_load, loaded = timed(lambda: Calls(scaled_calls(calls, a.transcripts), [company.name]), 1)
    print(f'\nCalls: {len(loaded)} calls, {len(loaded.passages):,} passages of every speaker, '
          f'{len(loaded.index().quotes):,} of experts; loaded and indexed in {t_load:.1f} s, '
          f'+{(proc.memory_info().rss - rss0) / 2**20:,.0f} MB resident')
    questions = [q.question for q in company.questions] + ADHOC
    loaded.ask(questions[0])  # the first ask of a process loads the English word frequencies
    found = sum(loaded.ask(q).attrs['evidence'] == 'found' for q in questions)
    print(f'{len(questions)} questions ({len(company.questions)} of the company\'s, without synonyms; {len(ADHOC)} ad hoc): '
          f'{found} discussed')
    latency('ask, top 10, with context', [lambda q=q: loaded.ask(q) for q in questions], a.repeat)
    one_call = next(t.file for t in loaded.transcripts.values() if 'Delgado' in t.file)
    latency('ask narrowed to one call', [lambda q=q: loaded.ask(q, call=one_call) for q in questions], a.repeat)
    latency('ask narrowed to an expert (in every copy)', [lambda q=q: loaded.ask(q, expert='Mark Delgado') for q in questions], a.repeat)
    for role in ('interviewer', 'any'):
        t_first, _ = timed(lambda: loaded.ask(questions[0], role=role), 1)
        print(f'first ask of role {role!r:14}            {t_first:7.1f} s   (builds that index, once)')
        latency(f'ask, role {role!r}', [lambda q=q: loaded.ask(q, role=role) for q in questions], a.repeat)
    latency('stances across experts (top 50)', [lambda q=q: loaded.stances(q) for q in questions[:4]], 1)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--transcripts', type=int, default=1000)
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--ask-only', action='store_true', help='only the Calls.ask figures')
    a = ap.parse_args()
    company = load_company('flexxray')
    transcripts, quotes = load_corpus(company.transcript_dir())
    calls = [t for t in transcripts if t.ok]
    if not a.ask_only: ranking(a, company, calls, quotes)
    asking(a, company, calls)

if __name__ == '__main__':
    main()
