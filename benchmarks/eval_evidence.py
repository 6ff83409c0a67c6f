"""The evidence verdict and ranking on several kinds of data, with one set of thresholds (`EvidenceParams()`).

    .venv/bin/python benchmarks/eval_evidence.py [--verbose]

1. QMSum (dev split of ../shared/data): every `specific` query asked of its own meeting (should be discussed:
   sensitivity) and of one transcript of another domain, chosen at random with a fixed seed (should be "none":
   specificity). Every speaker's turns, as `flexxray ask --role any`. QMSum: Zhong et al., NAACL 2021.
2. Companies with ground truth under tests/data/ (fictional expert calls, questions written without synonyms): the
   verdict per question, mean precision@5 of the quotes and call recall (the calls of the truth's passages that the
   top `max_quotes` quotes reach), over the discussed questions; the run's own ranking (`question_evidence`).
3. FlexXray's bundled calls with its questions stripped of their synonyms: how many are found.
"""
import argparse, collections, dataclasses, json, pathlib, random, time
import devdata
from flexxray_nb.parse import parse_text
from flexxray_nb.roles import assign_roles
from flexxray_nb.quotes import extract_quotes, load_corpus
from flexxray_nb.companies import read_company, load_company
from flexxray_nb.evidence import EvidenceParams, Postings, find_evidence, question_evidence

ROOT = pathlib.Path(__file__).resolve().parent.parent
ALL = ('interviewer', 'expert', 'other')

def qmsum(p, verbose=False):
    "Per domain: [own found, own n, other none, other n]."
    recs, rng, cache = list(devdata.records()), random.Random(0), {}
    def corpus(rec):
        if rec['id'] not in cache:
            qs = extract_quotes(assign_roles(parse_text(devdata.render(rec), file=rec['id'] + '.txt')), ALL)
            cache[rec['id']] = qs, Postings(qs)
        return cache[rec['id']]
    res = collections.defaultdict(lambda: [0, 0, 0, 0])
    for rec in recs:
        others = [r for r in recs if r['domain'] != rec['domain']]
        for q in (q for q in rec['queries'] if q['type'] == 'specific'):
            other = rng.choice(others)
            own, oth = (find_evidence(q['query'], *corpus(r)[:1], postings=corpus(r)[1], params=p) for r in (rec, other))
            r = res[rec['domain']]; r[0] += own.found; r[1] += 1; r[2] += not oth.found; r[3] += 1
            if verbose and not own.found: print(f"  missed  {q['query'][:90]!r}: {own.reason}")
            if verbose and oth.found: print(f"  false   {q['query'][:90]!r} in {other['id']}: {oth.quotes[0].text[:80]!r}")
    return res

def company(folder, p, k=50, verbose=False):
    "Verdict accuracy, mean precision@5 and call recall over the discussed questions, against truth.json."
    c = read_company(folder / 'company.toml'); trs, qs = load_corpus(c.transcript_dir()); pm = Postings(qs)
    truth, text = json.loads((folder / 'truth.json').read_text()), {pathlib.Path(t.file).name: t.text for t in trs}
    rows = []
    for q in c.questions:
        gold = [(a['file'], text[a['file']].index(a['text']), text[a['file']].index(a['text']) + len(a['text']))
                for a in truth['questions'][q.id]['answers']]
        ev = question_evidence(q, qs, k, subject=[c.name], postings=pm, params=p)
        hit = lambda x: any(pathlib.Path(x.file).name == f and x.start < b and a < x.end for f, a, b in gold)
        calls = {f for f, _, _ in gold}
        rows.append(dict(id=q.id, discussed=truth['questions'][q.id]['discussed'], found=ev.found,
                         p5=sum(map(hit, ev.quotes[:5])) / min(5, len(ev.quotes)) if ev.quotes else 0.0,
                         recall=len(calls & {pathlib.Path(x.file).name for x in ev.quotes}) / len(calls) if calls else None,
                         verbatim=all(text[pathlib.Path(x.file).name][x.start:x.end] == x.text for x in ev.quotes)))
        if verbose: print(f"  {q.id:24} discussed={rows[-1]['discussed']!s:5} found={ev.found!s:5} p@5={rows[-1]['p5']:.2f} "
                          f"recall={rows[-1]['recall']} | {ev.reason}")
    disc = [r for r in rows if r['discussed']]
    return dict(questions=len(rows), verdict=sum(r['found'] == r['discussed'] for r in rows) / len(rows),
                p5=sum(r['p5'] for r in disc) / len(disc), recall=sum(r['recall'] for r in disc) / len(disc),
                verbatim=all(r['verbatim'] for r in rows))

def flexxray(p):
    "How many of FlexXray's questions, without their synonyms, are found in the bundled calls."
    fx = load_company('FlexXray'); _, qs = load_corpus(fx.transcript_dir()); pm = Postings(qs)
    found = [question_evidence(dataclasses.replace(q, synonyms=[]), qs, 10, subject=[fx.name], postings=pm, params=p).found
             for q in fx.questions]
    return sum(found), len(found)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--verbose', action='store_true')
    a, p, t0 = ap.parse_args(), EvidenceParams(), time.perf_counter()
    if devdata.available():
        res = qmsum(p, a.verbose)
        print(f"{'QMSum domain':22} {'queries':>7}  {'sensitivity':>11}  {'specificity':>11}")
        for d, r in sorted(res.items()): print(f"{d:22} {r[1]:7}  {r[0] / r[1]:11.3f}  {r[2] / r[3]:11.3f}")
        tot = [sum(r[i] for r in res.values()) for i in range(4)]
        print(f"{'all':22} {tot[1]:7}  {tot[0] / tot[1]:11.3f}  {tot[2] / tot[3]:11.3f}\n")
    else: print(f"no evaluation data in {devdata.DATA}: QMSum part skipped\n")
    for folder in sorted((ROOT / 'tests' / 'data').glob('*/truth.json')):
        r = company(folder.parent, p, verbose=a.verbose)
        print(f"{folder.parent.name}: {r['questions']} questions, verdict {r['verdict']:.2f}, precision@5 {r['p5']:.3f}, "
              f"call recall {r['recall']:.3f}, all quotes verbatim: {r['verbatim']}")
    f, n = flexxray(p)
    print(f"FlexXray samples, questions without synonyms: {f} of {n} found")
    print(f"\n{time.perf_counter() - t0:.0f} s. QMSum: Zhong et al., NAACL 2021 (MIT licence); transcripts (c) their sources.")

if __name__ == '__main__':
    main()
