"""Speaker-role accuracy on the evaluation data, beside the "interviewer if >= 30% of turns contain ?" baseline.

    .venv/bin/python benchmarks/eval_roles.py [--data ../shared/data/eval_dev.jsonl] [--fit] [--errors]

Four measurements, each parsed and given roles exactly as `flexxray parse` does (cite QMSum and YIELD with the figures):
1. per domain: every transcript rendered as `Speaker: text` paragraphs, every labelled speaker scored;
2. network style: the oral histories relabelled as expert networks print calls (Client/Analyst/Expert/Advisor, Q/A), with
   a header and, in half of them, a moderator who only reads the recording and compliance notice, hands over and closes
   (truth: other); speakers right, and turns lost (every turn must come back, the moderator's included);
3. three-party: the oral histories made three-party from their own turns (a second interviewer whose short turns ask
   nothing; a second interviewee), with and without an introduction naming them;
4. reliability: of all speakers scored above, accuracy by confidence band (a calibrated 0.9 is right about 90% of the time).
`--fit` refits the turn-level weights (ROLE_MODEL in nbs/02_roles.ipynb) by logistic regression and prints them.
"""
import argparse, collections, difflib, time
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

class Scores:
    "Accuracy per group, turn-weighted accuracy, and (confidence, right) pairs for the reliability table."
    def __init__(self): self.by, self.conf = collections.defaultdict(collections.Counter), []
    def add(self, group, tr, truth, errors=False, name=''):
        got, turns = {s.name: s for s in tr.speakers}, collections.Counter(t.speaker for t in tr.turns)
        base, c = baseline(tr), self.by[group]
        for label, want in truth.items():
            if label not in got: c['missing'] += 1; continue
            ok = got[label].role == want
            c['n'] += 1; c['ok'] += ok; c['tn'] += turns[label]; c['tok'] += ok * turns[label]
            if want in ('interviewer', 'expert'): c['bn'] += 1; c['bok'] += base[label] == want
            self.conf.append((got[label].confidence, ok))
            if errors and not ok:
                print(f"  {name}: {label!r} is {want}, got {got[label].role} ({got[label].confidence}; {got[label].evidence})")
    def table(self, title):
        print(f"\n{title}\n{'':30} {'speakers':>8} {'accuracy':>8} {'turn-wtd':>8} {'baseline':>8}")
        for g, c in sorted(self.by.items()):
            print(f"{g:30} {c['n']:8d} {c['ok']/max(c['n'],1):8.3f} {c['tok']/max(c['tn'],1):8.3f} {c['bok']/max(c['bn'],1):8.3f}"
                  + (f"  ({c['missing']} labels not found)" if c['missing'] else ''))

def reliability(pairs):
    "Accuracy by confidence band."
    print(f"\nreliability (all speakers above)\n{'confidence':>12} {'speakers':>8} {'mean conf':>9} {'accuracy':>8}")
    for lo, hi in [(0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 0.95), (0.95, 1.01)]:
        band = [(c, ok) for c, ok in pairs if lo <= c < hi]
        if band: print(f"{lo:5.2f}-{min(hi, 1):4.2f} {len(band):8d} {np.mean([c for c, _ in band]):9.3f} {np.mean([ok for _, ok in band]):8.3f}")

def network_style(recs, scores, errors):
    "Oral histories as networks print them: speakers right and turns lost."
    lost = total = 0
    for i, rec in enumerate(devdata.oral_histories_of(recs)):
        call = devdata.network_call(rec, i)
        tr = assign_roles(parse_text(devdata.call_text(call)))
        scores.add('moderated' if i % 2 == 0 else 'not moderated', tr, call['roles'], errors, rec['id'])
        got = [(t.speaker, tuple(tr.turn_text(t).split())) for t in tr.turns]
        want = [(l, tuple(t.split())) for l, t in call['turns']]
        same = sum(b.size for b in difflib.SequenceMatcher(None, want, got, autojunk=False).get_matching_blocks())
        total += len(want); lost += len(want) - same
    print(f'network style: {total} turns, {lost} lost or changed (speaker or words)')

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=None)
    ap.add_argument('--fit', action='store_true')
    ap.add_argument('--errors', action='store_true', help='print the misjudged speakers')
    a = ap.parse_args()
    if not a.data and not devdata.available(): print('no evaluation data found: skipped'); return
    recs = [r for r in devdata.records(a.data) if r['speaker_roles']]
    if a.fit: return fit(recs)
    by_domain, t0, words = Scores(), time.perf_counter(), 0
    for rec in recs:
        text = devdata.render(rec)
        words += len(text.split())
        by_domain.add(rec['domain'], assign_roles(parse_text(text)), rec['speaker_roles'], a.errors, rec['id'])
    dt = time.perf_counter() - t0
    by_domain.table('1. per domain (as text files)')
    print(f"{len(recs)} transcripts, {words} words in {dt:.1f} s (parse + roles: {len(recs)/dt:.1f} transcripts/s, {words/dt:,.0f} words/s)")
    print('(baseline scored on interviewer/expert speakers only, as in the data README)')
    network = Scores()
    network_style(recs, network, a.errors)
    network.table('2. network style (oral histories relabelled; a moderator in half)')
    parties = Scores()
    for rec in devdata.oral_histories_of(recs):
        for kind in ('assistant', 'interviewee'):
            for intro in (False, True):
                call = devdata.third_party(rec, kind, intro)
                if call: parties.add(f"{kind}, {'introduced' if intro else 'not introduced'}", assign_roles(parse_text(call['text'])),
                                     call['roles'], a.errors, call['id'])
    parties.table('3. three-party (a second interviewer or interviewee from the record\'s own turns)')
    reliability(by_domain.conf + network.conf + parties.conf)

if __name__ == '__main__':
    main()
