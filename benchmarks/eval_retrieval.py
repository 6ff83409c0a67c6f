"""Turn retrieval on the evaluation data: hit@1, hit@5 and MRR per domain, `rank_turns` beside plain BM25 over turns.

    .venv/bin/python benchmarks/eval_retrieval.py [--data ../shared/data/eval_dev.jsonl] [--role any|expert] [--ablate]

For each `specific` query (QMSum: Zhong et al., NAACL 2021; cite it with these figures), the transcript is rendered as
an expert-network-style text file, parsed and given roles exactly as `flexxray parse` does, and its turns are ranked.
Turn i of the parsed transcript is the i-th non-empty turn of the record (empty turns are not rendered).

- `--role any`: every speaker's turns, scored against `relevant_turn_ids`.
- `--role expert`: only the turns of speakers `assign_roles` calls experts, scored against `relevant_turn_ids` that are
  turns of a ground-truth expert (queries without one are skipped; meetings have no roles). Two quote rankings are
  added: plain BM25 over the expert quotes and `rank_quotes`, each quote standing for its turn.

Plain BM25 is the same bm25s index (k1 1.2, b 0.75, the module's tokens) over whole turns with `query_tokens(question)`
and nothing else. `evidence` is the passage ranking the toolkit answers with (`find_evidence`, ungated), each passage standing
for its turn. `--ablate` adds `rank_turns` with one signal switched off at a time.
"""
import argparse, collections, dataclasses, pathlib, time
import numpy as np
import devdata
from flexxray_nb.parse import parse_text
from flexxray_nb.roles import assign_roles
from flexxray_nb.quotes import extract_quotes
from baselines import PassageIndex, RankWeights, TurnIndex, rank_turns, rank_quotes, query_tokens
from flexxray_nb.evidence import Postings, find_evidence

ABLATIONS = {'no passage windows': dict(passage=0.0), 'no lead-in': dict(lead_in=0.0, follow=0.0),
             'no speaker boost': dict(speaker=0.0), 'no spread': dict(spread_penalty=1.0)}

def bm25_order(question, texts, owners):
    "Owners (turn indices) of `texts` by plain BM25, best first, each once, zero scores left out."
    s = PassageIndex(texts).scores(query_tokens(question))
    return list(dict.fromkeys(owners[j] for j in np.argsort(-s, kind='stable') if s[j] > 0))

def methods(tr, role, ablate):
    "Name -> function(question) giving turn indices best first, for one transcript."
    roles = ('expert',) if role == 'expert' else None
    role_of = {s.name: s.role for s in tr.speakers}
    cand = [t.index for t in tr.turns if roles is None or role_of.get(t.speaker) in roles]
    index = TurnIndex(tr)
    passages = extract_quotes(tr, roles or ('interviewer', 'expert', 'other'))
    pm = Postings(passages)
    out = {'BM25 turns': lambda q: bm25_order(q, [tr.turn_text(tr.turns[i]) for i in cand], cand),
           'rank_turns': lambda q: [i for i, _ in rank_turns(q, tr, roles, index=index)],
           'evidence': lambda q: list(dict.fromkeys(x.turn for x in find_evidence(q, passages, top_k=len(passages), postings=pm, gate=False).quotes))}
    for name, change in (ABLATIONS.items() if ablate else ()):
        w = dataclasses.replace(RankWeights(), **change)
        out[f'  {name}'] = lambda q, w=w: [i for i, _ in rank_turns(q, tr, roles, index=index, weights=w)]
    if role == 'expert':
        quotes = extract_quotes(tr)
        qindex = PassageIndex([x.text for x in quotes])
        out['BM25 quotes'] = lambda q: bm25_order(q, [x.text for x in quotes], [x.turn for x in quotes])
        out['rank_quotes'] = lambda q: list(dict.fromkeys(x.turn for x in rank_quotes(q, quotes, len(quotes),
                                                                                       index=qindex)))
    return out

def first_hit(order, ids, relevant):
    "1-based rank of the first relevant turn in `order`, or None."
    return next((k for k, i in enumerate(order, 1) if ids[i] in relevant), None)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=None, help='a .jsonl split (default: ../shared/data/eval_dev.jsonl)')
    ap.add_argument('--role', choices=('any', 'expert'), default='any')
    ap.add_argument('--ablate', action='store_true', help='also rank with each signal of rank_turns switched off')
    a = ap.parse_args()
    if not (pathlib.Path(a.data).is_file() if a.data else devdata.available()):
        print(f"no evaluation data found ({a.data or devdata.DATA / 'eval_dev.jsonl'}): skipped"); return
    ranks = collections.defaultdict(lambda: collections.defaultdict(list))  # domain -> method -> first-hit ranks
    t0, n_queries = time.perf_counter(), 0
    for rec in devdata.records(a.data):
        queries = [q for q in rec['queries'] if q['type'] == 'specific' and q['relevant_turn_ids']]
        experts = {t['id'] for t in rec['turns'] if rec['speaker_roles'].get(t['speaker']) == 'expert'}
        if not queries or (a.role == 'expert' and not experts): continue
        tr = assign_roles(parse_text(devdata.render(rec)))
        ids = [t['id'] for t in rec['turns'] if t['text'].strip()]
        if len(ids) != len(tr.turns):
            print(f"{rec['id']}: parsed {len(tr.turns)} turns, the record has {len(ids)}: skipped"); continue
        ranked = methods(tr, a.role, a.ablate)
        for q in queries:
            relevant = set(q['relevant_turn_ids']) & experts if a.role == 'expert' else set(q['relevant_turn_ids'])
            if not relevant: continue
            n_queries += 1
            for name, rank in ranked.items(): ranks[rec['domain']][name].append(first_hit(rank(q['query']), ids, relevant))
    if not ranks: print('no specific queries with relevant turns for this role'); return
    print(f"role: {a.role}   {n_queries} queries, {time.perf_counter() - t0:.1f} s\n")
    print(f"{'domain':22} {'queries':>7}  {'method':22} {'hit@1':>6} {'hit@5':>6} {'MRR':>6}")
    for domain, by_method in sorted(ranks.items()):
        for k, (name, rs) in enumerate(by_method.items()):
            n = len(rs)
            h1, h5 = sum(r == 1 for r in rs) / n, sum(r is not None and r <= 5 for r in rs) / n
            mrr = sum(1 / r for r in rs if r) / n
            print(f"{domain if k == 0 else '':22} {n if k == 0 else '':>7}  {name:22} {h1:6.3f} {h5:6.3f} {mrr:6.3f}")
    print('\nQMSum: Zhong et al., NAACL 2021 (MIT licence); transcripts (c) their sources, see ../shared/data/README.md')

if __name__ == '__main__':
    main()
