"""Synthetic one-hour expert calls for the batch benchmarks and tests, recombined from the bundled samples' turns.

    .venv/bin/python benchmarks/make_corpus.py N [--out DIR] [--seed S] [--words 9000]

The bundled samples (flexxray_nb/samples, fictional and ours) are parsed and their roles assigned; every interviewer
question with the expert answer that follows it is a building block. A call is an opening exchange, body exchanges
drawn without repetition until it reaches about `words` words, and a closing exchange, said by invented people under
an invented header (network, date, expert line), in one of several layouts (`Name: text`, `Name (Title, Company):
text`, `Interviewer:`/`Expert:`, `Q:`/`A:`, a speaker and timestamp line, `[hh:mm:ss] Name: text`, upper-case labels,
bold Markdown labels, WebVTT voice cues). Call `i` depends only on (seed, i), so a corpus of 100 is the first 100 of
a corpus of 1,000. The evaluation data in ../shared/data is never used here (its licence does not allow copies).
"""
from __future__ import annotations
import argparse, datetime, functools, pathlib, random, re, time
from flexxray_nb.parse import read_transcript, find_transcripts
from flexxray_nb.roles import assign_roles, label_role

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLES = ROOT / 'flexxray_nb' / 'samples'

FIRST = ['Adrian', 'Beatriz', 'Caleb', 'Dana', 'Elif', 'Farid', 'Grace', 'Hiroshi', 'Imani', 'Jonas', 'Keisha', 'Lars',
         'Marisol', 'Nikhil', 'Olga', 'Paulo', 'Quinn', 'Rosa', 'Stefan', 'Tamara', 'Uma', 'Victor', 'Wendy', 'Xavier',
         'Yusuf', 'Zoe', 'Brendan', 'Carmen', 'Deepa', 'Emeka', 'Fiona', 'Gustavo', 'Hannah', 'Ivan', 'Joanna', 'Kofi']
LAST = ['Abernathy', 'Bautista', 'Castellano', 'Dubois', 'Eriksen', 'Fitzgerald', 'Galloway', 'Haddad', 'Iwasaki',
        'Jablonski', 'Kowalczyk', 'Lindqvist', 'Mahmoud', 'Novak', "O'Connell", 'Petrakis', 'Quintero', 'Rasmussen',
        'Szabo', 'Thornton', 'Umarov', 'Valdez', 'Whitaker', 'Yamamoto', 'Zielinski', 'Achebe', 'Brennan', 'Coelho']
TITLES = ['Former VP of Operations', 'Director of Quality Assurance', 'Plant Manager', 'Former Regional General Manager',
          'Head of Food Safety', 'QA Manager', 'Former Chief Commercial Officer', 'Operations Director',
          'Senior Sales Director', 'Former Site Manager', 'Supply Chain Director', 'Food Safety Consultant']
COMPANIES = ['Bluewater Foods', 'Granite Ridge Meats', 'Pinecrest Bakery Group', 'Sunfield Snacks', 'Ironwood Pet Foods',
             'Harborline Co-Packing', 'Meridian Inspection Systems', 'Oakmont Dairy', 'Cedar Valley Provisions',
             'Northstar Confections', 'Lakeshore Frozen Foods', 'Redfern Quality Services']
FIRMS = ['Harbor Peak Capital', 'Larchmont Ridge Partners', 'Brightwater Advisory', 'Summit Lane Equity', 'Keystone Growth']
NETWORKS = ['GLG', 'Tegus', 'Third Bridge', 'AlphaSights', 'Guidepoint', 'Coleman Research']
LAYOUTS = ['colon', 'titled', 'roles', 'qa', 'speaker_ts', 'bracket_ts', 'upper']
MD_LAYOUTS = ['colon', 'upper', 'bold', 'roles']

def _person(label) -> str | None:
    "The bare name in a speaker label or header value (no honorific, no parentheses), or None for a role word."
    if not label or label_role(label): return None
    bare = re.sub(r'^(?:Dr|Mr|Mrs|Ms|Prof)\.?\s+', '', label.split('(')[0].split(',')[0].strip())
    words = bare.split()
    return bare if 2 <= len(words) <= 3 and all(w[0].isupper() for w in words) else None

def _scrubber(tr):
    "A function that replaces the sample's people and company in a text by placeholders such as `⟨expert_first⟩`."
    roles, m = {s.name: s.role for s in tr.speakers}, tr.metadata
    experts = [_person(m.get('expert_name'))] + [_person(n) for n, r in roles.items() if r == 'expert']
    interviewers = [_person(n) for n in m.get('interviewers', [])] + [_person(n) for n, r in roles.items() if r == 'interviewer']
    subs = []  # (text, placeholder)
    for n in dict.fromkeys(filter(None, experts)):
        subs += [(n, '⟨expert⟩'), (n.split()[0], '⟨expert_first⟩')]
        subs += [(f'{h} {n.split()[-1]}', f'{h} ⟨expert_last⟩') for h in ('Dr.', 'Mr.', 'Ms.')]
    for k, n in enumerate(dict.fromkeys(filter(None, interviewers))):  # a second interviewer is a colleague
        subs += [(n, '⟨colleague⟩' if k else '⟨interviewer⟩'), (n.split()[0], '⟨colleague⟩' if k else '⟨interviewer_first⟩')]
    co = m.get('expert_company') or ''
    if re.search('[A-Za-z]{3}', co) and 'flexxray' not in co.lower(): subs += [(co, '⟨company⟩'), (co.split()[0], '⟨company_first⟩')]
    rx = [(re.compile(rf'\b{re.escape(a)}\b'), b) for a, b in sorted(subs, key=lambda s: (-len(s[0]), s))]  # longest first
    def scrub(text):
        for r, b in rx: text = r.sub(b, text)
        return text
    return scrub

@functools.lru_cache(maxsize=4)
def building_blocks(samples=SAMPLES) -> dict:
    "The samples' exchanges: {'open': [...], 'body': [...], 'close': [...]}, each a (question, answer) pair of texts."
    blocks = dict(open=[], body=[], close=[])
    for p in find_transcripts(samples):
        tr = assign_roles(read_transcript(p))
        roles, scrub = {s.name: s.role for s in tr.speakers}, _scrubber(tr)
        turns = [(roles[t.speaker], scrub(tr.turn_text(t).strip())) for t in tr.turns if roles[t.speaker] != 'other']
        pairs = [(q, a) for (rq, q), (ra, a) in zip(turns, turns[1:]) if rq == 'interviewer' and ra == 'expert']
        if len(pairs) < 3: continue
        blocks['open'].append(pairs[0]); blocks['close'].append(pairs[-1]); blocks['body'] += pairs[1:-1]
    return blocks

def _words(pair) -> int: return len(pair[0].split()) + len(pair[1].split())

def _hms(seconds: float) -> str:
    s = int(seconds)
    return f'{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}'

def _date_text(d: datetime.date, style: int) -> str:
    return [d.strftime('%B %-d, %Y'), d.isoformat(), d.strftime('%m/%d/%Y'), d.strftime('%-d %B %Y')][style]

def _header(c: dict, fmt: str) -> list[str]:
    "Header lines for call `c` in one of several networks' styles."
    date = _date_text(c['date'], c['date_style'])
    notice = 'FICTIONAL TRANSCRIPT: synthetic, recombined from the flexxray_nb samples. All names are invented.'
    bio = (f"Bio: {c['expert']} is {c['title']} at {c['company']} and has worked with inspection and recovery services "
           f"for food manufacturers. The expert has no financial interest in FlexXray.")
    styles = [
        [f"{c['network']} Expert Call", 'Topic: FlexXray inspection services', f'Date: {date}',
         f"Expert: {c['expert']}, {c['title']}, {c['company']}", f"Interviewer: {c['interviewer']}, {c['firm']}", notice, '', bio],
        [f"{c['network']} Expert Call Transcript", f'Call date: {date}', f"Expert: {c['expert']}", f"Title: {c['title']}",
         f"Company: {c['company']}", notice],
        [f"FlexXray Expert Call: {c['title']}", f"Network: {c['network']}", f'Date: {date}',
         f"Expert: {c['expert']}, {c['title']}, {c['company']}", f"Interviewer: {c['interviewer']}", notice, '', bio],
    ]
    lines = styles[c['header_style']]
    if fmt == 'md': lines = [f"# {lines[0]}"] + lines[1:] + ['', '---']
    return lines

def _label(c: dict, role: str, layout: str) -> str:
    if layout == 'roles': return 'Interviewer' if role == 'i' else 'Expert'
    if layout == 'qa': return 'Q' if role == 'i' else 'A'
    name = c['interviewer'] if role == 'i' else c['expert']
    if layout == 'titled': return f"{c['network']} Client" if role == 'i' else f"{name} ({c['title']}, {c['company']})"
    if layout == 'upper': return name.upper() if role == 'e' or c['header_style'] else 'MODERATOR'
    return name

def _block(label: str, text: str, ts: str, layout: str) -> str:
    "One turn in a layout."
    if layout == 'speaker_ts': return f'{label}  {ts}\n{text}'
    if layout == 'bracket_ts': return f'[{ts}] {label}: {text}'
    if layout == 'bold': return f'**{label}:** {text}'
    return f'{label}: {text}'

def _cues(label: str, text: str, t0: float, t1: float, n0: int) -> list[str]:
    "A turn as WebVTT cues of at most about 20 words, spread over [t0, t1)."
    words = text.split()
    chunks = [' '.join(words[k:k + 20]) for k in range(0, len(words), 20)]
    step = (t1 - t0) / max(1, len(chunks))
    def vt(s): return f'{_hms(s)}.{int(s * 1000) % 1000:03d}'
    return [f'{n0 + k}\n{vt(t0 + k * step)} --> {vt(t0 + (k + 1) * step - 0.05)}\n<v {label}>{ch}</v>'
            for k, ch in enumerate(chunks)]

def call_plan(i: int, seed: int = 0, words: int = 9000, blocks: dict | None = None) -> dict:
    "The invented people, header, layout and exchanges of call `i` (a function of seed and i only)."
    rng, blocks = random.Random(f'{seed}:{i}'), blocks or building_blocks()
    people = rng.sample([f'{f} {l}' for f in FIRST for l in LAST], 3)
    fmt = rng.choices(['txt', 'md', 'vtt'], [65, 25, 10])[0]
    c = dict(i=i, fmt=fmt, expert=people[0], interviewer=people[1], colleague=people[2], title=rng.choice(TITLES),
             company=rng.choice(COMPANIES), firm=rng.choice(FIRMS), network=rng.choice(NETWORKS),
             date=datetime.date(2024, 1, 1) + datetime.timedelta(days=rng.randrange(700)), date_style=rng.randrange(4),
             header_style=rng.randrange(3), layout='voice' if fmt == 'vtt' else rng.choice(MD_LAYOUTS if fmt == 'md' else LAYOUTS))
    opening, closing = rng.choice(blocks['open']), rng.choice(blocks['close'])
    budget, body = words - _words(opening) - _words(closing), []
    for pair in rng.sample(blocks['body'], len(blocks['body'])):
        if budget <= 0: break
        body.append(pair); budget -= _words(pair)
    names = dict(expert=c['expert'], expert_first=c['expert'].split()[0], expert_last=c['expert'].split()[-1],
                 interviewer=c['interviewer'], interviewer_first=c['interviewer'].split()[0], colleague=c['colleague'],
                 company=c['company'], company_first=c['company'].split()[0])
    fill = lambda t: re.sub(r'⟨(\w+)⟩', lambda m: names[m[1]], t)
    c['exchanges'] = [(fill(q), fill(a)) for q, a in [opening, *body, closing]]
    return c

def render(c: dict) -> str:
    "The text of a planned call in its format and layout."
    t, out = 15.0, []
    if c['fmt'] == 'vtt':
        out = ['WEBVTT', ''] + [f'NOTE {l}\n' for l in _header(c, 'vtt') if l]
        n = 1
        for q, a in c['exchanges']:
            for role, text in (('i', q), ('e', a)):
                label = c['interviewer'] if role == 'i' else c['expert']
                dt = len(text.split()) / 2.5 + 1.5  # 150 words a minute
                cues = _cues(label, text, t, t + dt, n); out += [x + '\n' for x in cues]; n += len(cues); t += dt
        return '\n'.join(out)
    out = _header(c, c['fmt']) + ['']
    for q, a in c['exchanges']:
        for role, text in (('i', q), ('e', a)):
            out.append(_block(_label(c, role, c['layout']), text, _hms(t), c['layout']) + '\n')
            t += len(text.split()) / 2.5 + 1.5
    return '\n'.join(out)

def file_name(c: dict) -> str:
    "A file name in the style expert networks use, unique by the call's number."
    date = c['date'].isoformat()
    return [f"{c['i']:05d} {c['network']} - {c['title']} - {date}.{c['fmt']}",
            f"{c['i']:05d} {c['expert']} - {c['title']} ({date}).{c['fmt']}",
            f"{c['i']:05d} {c['title']} - {c['company']} - Expert Call.{c['fmt']}"][c['i'] % 3]

def make_corpus(n: int, out, seed: int = 0, words: int = 9000, samples=SAMPLES) -> list[pathlib.Path]:
    "Write `n` synthetic calls of about `words` words into folder `out`; returns their paths."
    out = pathlib.Path(out); out.mkdir(parents=True, exist_ok=True)
    blocks, paths = building_blocks(pathlib.Path(samples)), []
    for i in range(n):
        c = call_plan(i, seed, words, blocks)
        p = out / file_name(c)
        p.write_text(render(c), encoding='utf-8')
        paths.append(p)
    return paths

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('n', type=int, help='how many calls')
    ap.add_argument('--out', default='corpus', help='folder to write them to (created)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--words', type=int, default=9000, help='about how many words per call')
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    paths = make_corpus(a.n, a.out, a.seed, a.words)
    mb = sum(p.stat().st_size for p in paths) / 2**20
    print(f'{len(paths)} calls, {mb:.1f} MB, in {a.out} ({time.perf_counter() - t0:.1f} s)')

if __name__ == '__main__':
    main()
