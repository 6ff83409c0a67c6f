"""Shared helpers for benchmarks and tests that read the evaluation data in ../shared/data (never copied here)."""
import json, os, pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = pathlib.Path(os.environ.get('FLEXXRAY_EVAL_DATA', ROOT.parent / 'shared' / 'data'))

def available() -> bool:
    "Whether the evaluation data is present (a user's clone may not have it)."
    return (DATA / 'eval_dev.jsonl').is_file()

def records(path=None):
    "The transcripts of an eval split, one dict each."
    with open(path or DATA / 'eval_dev.jsonl', encoding='utf-8') as f:
        for line in f:
            if line.strip(): yield json.loads(line)

def render(rec) -> str:
    "A record as an expert-network-style text file: `Speaker: text` paragraphs, as the shared samples are written."
    return '\n\n'.join(f"{t['speaker']}: {t['text']}" for t in rec['turns'] if t['text'].strip()) + '\n'

# --- Renderings of the oral histories the way expert networks print calls (for eval_roles.py and eval_renderings.py) ---
# Labels relabelled to role words, a network-style header, and in every other call a moderator who opens with the
# recording notice and compliance reminder, hands over, and (in half of those) closes; one call in four has no separator
# line after the header, so a single moderator turn sits right against it. The words of every turn are the record's own.

NETWORK_LABELS = [('Client', 'Expert'), ('Analyst', 'Advisor'), ('Interviewer', 'Expert'), ('Q', 'A')]
MODERATORS = ['Moderator', 'MODERATOR', 'Operator', 'Host']
OPENINGS = [
    "Good afternoon, and welcome to this {network} call. Please note that this call is being recorded. As a reminder, the "
    "expert should not disclose confidential information or material non-public information about a current or former "
    "employer. I'll now hand over to the client.",
    "Hello everyone, and thank you for joining. Before we begin, a reminder that this call is being recorded and "
    "transcribed, and that nothing said on it is investment advice. The expert has confirmed that they will not share "
    "confidential information. Please go ahead.",
]
CLOSINGS = ["Thank you both. This concludes the call; you may now disconnect.",
            "We're at time. Thank you everyone for joining, and this concludes the call."]
NETWORKS = ['GLG', 'AlphaSights', 'Third Bridge', 'Guidepoint']

def oral_histories_of(recs):
    "The interview records with gold roles (the oral histories), in order."
    return [r for r in recs if r['domain'].startswith('oral_history') and r['speaker_roles']]

def _role_labels(rec, style: int) -> dict:
    "A role-word label for every speaker: numbered when a side has several people (Q/A keeps one label per side)."
    words = dict(zip(('interviewer', 'expert'), NETWORK_LABELS[style % len(NETWORK_LABELS)]))
    people = {r: [s for s in dict.fromkeys(t['speaker'] for t in rec['turns']) if rec['speaker_roles'].get(s) == r] for r in words}
    out = {}
    for role, names in people.items():
        for i, s in enumerate(names, 1):
            out[s] = words[role] if len(names) == 1 or words[role] in ('Q', 'A') else f'{words[role]} {i}'
    return out

def network_call(rec, i: int) -> dict:
    "Call `i` as a network prints it: header lines, `(label, text)` turns and the true role of each label."
    labels, network = _role_labels(rec, i), NETWORKS[i % len(NETWORKS)]
    expert = rec.get('meta', {}).get('subtitle_interviewee') or next(s for s, r in rec['speaker_roles'].items() if r == 'expert')
    header = [f'{network} Expert Call Transcript', 'Date: March 14, 2025', f'Expert: {expert}, Former Program Manager',
              'FICTIONAL RENDERING: a public oral history relabelled for parser tests.']
    turns = [(labels[t['speaker']], t['text'].strip()) for t in rec['turns'] if t['text'].strip() and t['speaker'] in labels]
    roles = {labels[s]: r for s, r in rec['speaker_roles'].items() if s in labels}
    if i % 2 == 0:  # half the calls open and close with a moderator doing only housekeeping
        mod = MODERATORS[(i // 2) % len(MODERATORS)]
        closing = [(mod, CLOSINGS[(i // 2) % 2])] if i % 4 else []  # one moderator in two opens only: one turn
        turns = [(mod, OPENINGS[(i // 2) % 2].format(network=network))] + turns + closing
        roles[mod] = 'other'
    return dict(id=rec['id'], header=header, turns=turns, roles=roles, separator=i % 4 != 0)

def call_text(call: dict) -> str:
    "A network call as a .txt transcript: the header, a separator line (not in every call), then `Label: text` paragraphs."
    return '\n'.join(call['header']) + ('\n----------\n\n' if call['separator'] else '\n') + \
        '\n\n'.join(f'{l}: {t}' for l, t in call['turns']) + '\n'

def _short_turns(rec, role: str, need_no_question: bool) -> list[int]:
    "Indices of short turns (at most 40 words) by `role`, past the opening, optionally only those without a '?'."
    roles = rec['speaker_roles']
    return [i for i, t in enumerate(rec['turns']) if i > 2 and roles.get(t['speaker']) == role and t['text'].strip()
            and len(t['text'].split()) <= 40 and not (need_no_question and '?' in t['text'])]

def third_party(rec, kind: str, introduced: bool, n: int = 3) -> dict | None:
    """A two-party interview made three-party from its own turns: up to `n` short turns of one side move to a new person
    (`kind` 'assistant': a second interviewer whose turns ask nothing; 'interviewee': a second interviewee), optionally
    named in the opening turn as such. Returns `{'text', 'roles'}` or None when the record has no such turns."""
    role = 'interviewer' if kind == 'assistant' else 'expert'
    picks = _short_turns(rec, role, need_no_question=kind == 'assistant')
    if not picks: return None
    chosen = set(picks[len(picks) // (n + 1)::max(1, len(picks) // n)][:n])
    name = 'Dana Whitfield' if kind == 'assistant' else 'Maria Lindqvist'
    turns = [dict(t, speaker=name) if i in chosen else dict(t) for i, t in enumerate(rec['turns'])]
    if introduced:
        phrase = f' The interviewer is assisted by {name}.' if kind == 'assistant' else f' Joining us is our guest {name}, who worked alongside.'
        turns[0] = dict(turns[0], text=turns[0]['text'].rstrip() + phrase)
    roles = dict(rec['speaker_roles'], **{name: role})
    text = '\n\n'.join(f"{t['speaker']}: {t['text']}" for t in turns if t['text'].strip()) + '\n'
    return dict(id=rec['id'], text=text, roles=roles)
