"""Property: on every parser, every quote is an exact span of its transcript inside one turn of its speaker, and the
parser recovers the speakers and the words of every turn (hypothesis generates the calls)."""
import io, re
from hypothesis import given, settings, strategies as st, HealthCheck
from flexxray_nb.parse import parse_text, docx_text, pdf_text, captions_text
from flexxray_nb.roles import assign_roles
from flexxray_nb.quotes import extract_quotes

FIRST = ['Sarah', 'Daniel', 'Linda', 'Mark', 'Priya', 'Greg', 'Nina', 'Helen', "O'Neil", 'Jean-Luc']
LAST = ['Kim', 'Reyes', 'Okafor', 'Delgado', 'Natarajan', 'Olsen', 'Patel', 'Cho', "d'Arcy", 'Smith-Jones']
WORDS = ('we inspected pallets of product on hold after glass was found the facility was close so trucks arrived fast '
         'pricing per unit mattered most customers trusted the portal images and reports recall insurance paid for it '
         'about percent of jobs came from repeat clients honestly it depends on the season and the plant').split()

names = st.builds(lambda f, l: f'{f} {l}', st.sampled_from(FIRST), st.sampled_from(LAST))
sentence = st.builds(lambda ws, end, n: ' '.join([ws[0].capitalize()] + ws[1:]) + (f' {n}%' if n else '') + end,
                     st.lists(st.sampled_from(WORDS), min_size=3, max_size=18), st.sampled_from(['.', '?', '!', '.']),
                     st.one_of(st.none(), st.integers(1, 99)))
paragraph = st.lists(sentence, min_size=1, max_size=4).map(' '.join)
turn_text = st.lists(paragraph, min_size=1, max_size=3)

@st.composite
def calls(draw):
    "Speakers and turns: alternating interviewer/expert, sometimes a third speaker."
    people = draw(st.lists(names, min_size=2, max_size=3, unique=True))
    n = draw(st.integers(2, 12))
    turns = [(people[i % 2] if draw(st.integers(0, 5)) else people[-1], draw(turn_text)) for i in range(n)]
    merged = []  # the same speaker twice in a row is one turn
    for sp, paras in turns:
        if merged and merged[-1][0] == sp: merged[-1] = (sp, merged[-1][1] + paras)
        else: merged.append((sp, paras))
    return merged

LAYOUTS = {
    'colon': lambda sp, ps, i: f'{sp}: ' + '\n\n'.join(ps),
    'titled': lambda sp, ps, i: f'{sp} (Director, QA (North America), Acme Foods): ' + '\n\n'.join(ps),
    'bracket_ts': lambda sp, ps, i: f'[00:{i:02d}:07] {sp}: ' + '\n\n'.join(ps),
    'speaker_ts': lambda sp, ps, i: f'{sp}  00:{i:02d}:15\n' + '\n\n'.join(ps),
    'upper': lambda sp, ps, i: f'{sp.upper()}: ' + '\n\n'.join(ps),
    'markdown_bold': lambda sp, ps, i: f'**{sp}:** ' + '\n\n'.join(ps),
}
HEADER = 'Expert Call Transcript\nDate: March 14, 2025\nNetwork: GLG\nFICTIONAL TRANSCRIPT: for tests.\n---\n\n'

def label_of(layout, sp):
    return {'titled': f'{sp} (Director, QA (North America), Acme Foods)', 'upper': sp.upper()}.get(layout, sp)

def check(tr, call, layout='colon'):
    "Speakers and words of every turn are recovered; every quote is an exact span in one turn of its speaker."
    assert tr.error is None, tr.error
    assert [t.speaker for t in tr.turns] == [label_of(layout, sp) for sp, _ in call]
    for t, (_, paras) in zip(tr.turns, call):
        assert tr.text[t.start:t.end].split() == ' '.join(paras).split()
    tr = assign_roles(tr)
    quotes = extract_quotes(tr, ('interviewer', 'expert', 'other'))
    for q in quotes:
        assert tr.text[q.start:q.end] == q.text
        assert any(t.speaker == q.speaker and t.start <= q.start and q.end <= t.end for t in tr.turns)

COMMON = dict(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

@settings(**COMMON)
@given(calls(), st.sampled_from(sorted(LAYOUTS)), st.booleans())
def test_text_layouts(call, layout, header):
    text = (HEADER if header else '') + '\n\n'.join(LAYOUTS[layout](label_of('colon', sp), ps, i) for i, (sp, ps) in enumerate(call)) + '\n'
    check(parse_text(text), call, layout)

@settings(**{**COMMON, 'max_examples': 25})
@given(calls())
def test_docx(call):
    import docx
    doc = docx.Document()
    for sp, paras in call:
        p = doc.add_paragraph(); p.add_run(f'{sp}:').bold = True; p.add_run(' ' + paras[0])
        for more in paras[1:]: doc.add_paragraph(more)
    buf = io.BytesIO(); doc.save(buf)
    text, labels = docx_text(buf.getvalue())
    check(parse_text(text, fmt='docx', forced_labels=labels), call)

@settings(**{**COMMON, 'max_examples': 15})
@given(calls())
def test_pdf(call):
    from fpdf import FPDF
    pdf = FPDF(); pdf.set_auto_page_break(True, 20); pdf.add_page(); pdf.set_font('Helvetica', size=11)
    for sp, paras in call:
        for j, para in enumerate(paras):
            pdf.multi_cell(0, 6, (f'{sp}: ' if j == 0 else '') + para, new_x='LMARGIN', new_y='NEXT'); pdf.ln(3)
    text = pdf_text(bytes(pdf.output()))
    check(parse_text(text, fmt='pdf'), call)

@settings(**COMMON)
@given(calls(), st.booleans())
def test_captions(call, vtt):
    cues, i = [], 0
    for sp, paras in call:
        for sent in re.split(r'(?<=[.?!])\s+', ' '.join(paras)):
            i += 1
            t = f'00:{i // 60:02d}:{i % 60:02d}'
            cues.append(f'{i}\n{t}.000 --> {t}.900\n<v {sp}>{sent}</v>' if vtt else f'{i}\n{t},000 --> {t},900\n{sp}: {sent}')
    raw = ('WEBVTT\n\n' if vtt else '') + '\n\n'.join(cues) + '\n'
    text, labels = captions_text(raw)
    check(parse_text(text, fmt='vtt', forced_labels=labels), call)
