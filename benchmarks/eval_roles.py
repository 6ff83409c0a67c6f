"""Speaker-role accuracy on the evaluation data, beside the "interviewer if >= 30% of turns contain ?" baseline.

    .venv/bin/python benchmarks/eval_roles.py [--data ../shared/data/eval_dev.jsonl] [--fit]

Each transcript is rendered as an expert-network-style text file, parsed and given roles exactly as `flexxray parse`
does; every labelled speaker is scored. `--fit` refits the turn-level weights (ROLE_MODEL in nbs/02_roles.ipynb) by
logistic regression on the interviewer/expert persons and prints them.
"""
import argparse, collections, time
import numpy as np
import devdata
from flexxray_nb.parse import parse_text
from flexxray_nb.roles import assign_roles, person_features, FEATURES, label_role

def baseline(tr):
    "Interviewer if at least 30% of the speaker's turns contain '?', else expert."
    turns = collections.defaultdict(list)
    for t in tr.turns: turns[t.speaker].append('?' in tr.turn_text(t))
    return {s: 'interviewer' if sum(q) / len(q) >= 0.3 else 'expert' for s, q in turns.items()}

def fit(recs):
    "Logistic regression (numpy, L2) of interviewer vs expert on the standardised person features."
    X, y = [], []
    for rec in recs:
        tr = parse_text(devdata.render(rec))
        for k, f in person_features(tr).items():
            roles = {rec['speaker_roles'].get(l) for l in f['labels']} - {None}
            if len(roles) == 1 and roles <= {'interviewer', 'expert'} and not any(label_role(l) for l in f['labels']):
                X.append([f[n] for n in FEATURES]); y.append(roles.pop() == 'interviewer')
    X, y = np.array(X, float), np.array(y, float)
    mu, sd = X.mean(0), X.std(0) + 1e-9
    Z = (X - mu) / sd
    w, b = np.zeros(Z.shape[1]), 0.0
    for _ in range(5000):
        p = 1 / (1 + np.exp(-(Z @ w + b)))
        w -= 0.1 * (Z.T @ (p - y) / len(y) + 0.01 * w)
        b -= 0.1 * (p - y).mean()
    print(f'fitted on {len(y)} persons ({int(y.sum())} interviewers)')
    print({'mean': [round(float(v), 4) for v in mu], 'scale': [round(float(v), 4) for v in sd],
           'weights': [round(float(v), 3) for v in w], 'bias': round(float(b), 3)})

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=None)
    ap.add_argument('--fit', action='store_true')
    ap.add_argument('--errors', action='store_true', help='print the misjudged speakers')
    a = ap.parse_args()
    if not a.data and not devdata.available(): print('no evaluation data found: skipped'); return
    recs = [r for r in devdata.records(a.data) if r['speaker_roles']]
    if a.fit: return fit(recs)
    acc = collections.defaultdict(lambda: collections.Counter())
    t0, words = time.perf_counter(), 0
    for rec in recs:
        text = devdata.render(rec)
        words += len(text.split())
        tr = assign_roles(parse_text(text))
        got = {s.name: s for s in tr.speakers}
        base = baseline(tr)
        turns = collections.Counter(t.speaker for t in tr.turns)
        for label, want in rec['speaker_roles'].items():
            if label not in got: continue
            c = acc[rec['domain']]
            ok = got[label].role == want
            c['n'] += 1; c['ok'] += ok
            c['tn'] += turns[label]; c['tok'] += ok * turns[label]
            if want in ('interviewer', 'expert'):
                c['bn'] += 1; c['bok'] += base[label] == want
            if a.errors and not ok:
                print(f"  {rec['id']}: {label!r} is {want}, got {got[label].role} ({got[label].confidence}; {got[label].evidence})")
    dt = time.perf_counter() - t0
    print(f"{'domain':24} {'speakers':>8} {'accuracy':>8} {'turn-wtd':>8} {'baseline':>8}")
    for d, c in sorted(acc.items()):
        print(f"{d:24} {c['n']:8d} {c['ok']/c['n']:8.3f} {c['tok']/max(c['tn'],1):8.3f} {c['bok']/max(c['bn'],1):8.3f}")
    print(f"{len(recs)} transcripts, {words} words in {dt:.1f} s (parse + roles: {len(recs)/dt:.1f} transcripts/s, {words/dt:,.0f} words/s)")
    print('(baseline scored on interviewer/expert speakers only, as in ../shared/data/README.md)')

if __name__ == '__main__':
    main()
