"""The dev oral histories rendered as expert networks deliver calls (.txt, .docx, .pdf, .vtt), parsed back.

    .venv/bin/python benchmarks/eval_renderings.py [--data ../shared/data/eval_dev.jsonl] [--keep DIR]

Each interview is relabelled as networks print calls (Client/Analyst/Expert/Advisor, Q/A; see devdata.network_call), with
a header and, in every other call, a moderator's recording and compliance opening and closing. Every rendering carries
what its format carries in the wild: the .docx bold labels, page breaks and a running header typed into the body after
each break; the .pdf a running header and a "Page N of M" footer on every page, wrapped lines, and in every other call the
speaker and time on a line of their own above each turn (Zoom and Otter exports); the .vtt one cue per
sentence with a voice tag and the header in a NOTE. For each format it prints: calls whose turns come back with exactly
the speakers in order (no turn lost or added), speakers whose role is right, and the spoken-word match (words of all
turns, in order, that come back; difflib matching blocks over the rendering's own words). Cite YIELD with the figures.
"""
import argparse, collections, difflib, io, pathlib, re, tempfile
import devdata
from flexxray_nb.parse import read_transcript
from flexxray_nb.roles import assign_roles

def render_docx(call, path):
    "A .docx: header paragraphs, then `Label:` in bold and the words; a page break and a typed running header every 25 turns."
    import docx
    from docx.enum.text import WD_BREAK
    doc = docx.Document()
    for line in call['header']: doc.add_paragraph(line)
    doc.add_paragraph('----------')
    for i, (label, text) in enumerate(call['turns']):
        if i and i % 25 == 0:
            doc.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
            doc.add_paragraph(f'{call["header"][0]} | Confidential')
        paras = text.split('\n\n')
        p = doc.add_paragraph(); p.add_run(f'{label}:').bold = True; p.add_run(' ' + paras[0])
        for more in paras[1:]: doc.add_paragraph(more)
    doc.save(path)

LATIN1 = str.maketrans({'\u2018': "'", '\u2019': "'", '\u201c': '"', '\u201d': '"', '\u2013': '-', '\u2014': '--',
                        '\u2026': '...', '\u00a0': ' '})

def latin1(text: str) -> str:
    "What Helvetica (a core PDF font, latin-1) can show."
    return text.translate(LATIN1).encode('latin-1', 'replace').decode('latin-1')

def render_pdf(call, path):
    "A .pdf (fpdf2, Helvetica, Letter) with a running header and a `Page N of M` footer on every page."
    from fpdf import FPDF
    class PDF(FPDF):
        def header(self):
            self.set_font('Helvetica', '', 8); self.cell(0, 5, latin1(f'{call["header"][0]} | Confidential'), align='C'); self.ln(8)
            self.set_font('Helvetica', '', 11)
        def footer(self):
            self.set_y(-15); self.set_font('Helvetica', '', 8); self.cell(0, 10, f'Page {self.page_no()} of {{nb}}', align='C')
    pdf = PDF(format='Letter'); pdf.alias_nb_pages(); pdf.set_auto_page_break(True, 20); pdf.add_page(); pdf.set_font('Helvetica', size=11)
    for line in call['header'] + ['----------']: pdf.multi_cell(0, 6, latin1(line), new_x='LMARGIN', new_y='NEXT')
    pdf.ln(3)
    for i, (label, text) in enumerate(call['turns']):
        if call['stamped']: pdf.multi_cell(0, 6, f'{label}  {timestamp(7 * i)}', new_x='LMARGIN', new_y='NEXT')
        for j, para in enumerate(text.split('\n\n')):
            first = j == 0 and not call['stamped']
            pdf.multi_cell(0, 6, latin1((f'{label}: ' if first else '') + para), new_x='LMARGIN', new_y='NEXT'); pdf.ln(3)
    pdf.output(str(path))

def timestamp(s: int) -> str:
    "hh:mm:ss"
    return f'{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}'

def render_vtt(call, path):
    "WebVTT: the header in a NOTE, then one cue per sentence with a voice tag."
    cues, i = ['WEBVTT', 'NOTE ' + '\n'.join(call['header'])], 0
    for label, text in call['turns']:
        for sent in re.split(r'(?<=[.?!])\s+', ' '.join(text.split())):
            cues.append(f'{i + 1}\n{timestamp(i)}.000 --> {timestamp(i)}.900\n<v {label}>{sent}</v>'); i += 1
    path.write_text('\n\n'.join(cues) + '\n', encoding='utf-8')

RENDER = {'txt': lambda c, p: p.write_text(devdata.call_text(c), encoding='utf-8'), 'docx': render_docx, 'pdf': render_pdf, 'vtt': render_vtt}

def words(text: str) -> list[str]:
    "Words compared case- and punctuation-blind (renderers differ in quotes and dashes, not in what was said)."
    return [w for w in re.findall(r"[a-z0-9]+", text.lower())]

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=None)
    ap.add_argument('--keep', help='write the renderings to this folder and keep them')
    a = ap.parse_args()
    if not a.data and not devdata.available(): print('no evaluation data found: skipped'); return
    calls = [dict(devdata.network_call(r, i), stamped=i % 2 == 1)  # every other .pdf prints `Label  hh:mm:ss` above each turn
             for i, r in enumerate(devdata.oral_histories_of(list(devdata.records(a.data))))]
    folder = pathlib.Path(a.keep or tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    stats = collections.defaultdict(collections.Counter)
    for i, call in enumerate(calls):
        for fmt, render in RENDER.items():
            path = folder / f'call{i:02d}.{fmt}'
            render(call, path)
            tr = assign_roles(read_transcript(path))
            s, conv = stats[fmt], latin1 if fmt == 'pdf' else str
            want = [w for _, t in call['turns'] for w in words(conv(t))]
            got = [w for t in tr.turns for w in words(tr.turn_text(t))]
            matched = sum(b.size for b in difflib.SequenceMatcher(None, want, got, autojunk=False).get_matching_blocks())
            s['calls'] += 1; s['same_speakers'] += [t.speaker for t in tr.turns] == [l for l, _ in call['turns']]
            s['words'] += len(want); s['matched'] += matched; s['worst'] = min(s.get('worst', 10**6), round(1e6 * matched / len(want)))
            roles = {x.name: x.role for x in tr.speakers}
            s['speakers'] += len(call['roles']); s['roles_right'] += sum(roles.get(l) == r for l, r in call['roles'].items())
            if tr.error: print(f'  {path.name}: {tr.error}')
    print(f"{'format':6} {'calls':>5} {'same speakers':>13} {'roles right':>11} {'word match':>10} {'worst call':>10}")
    for fmt, s in stats.items():
        print(f"{fmt:6} {s['calls']:5d} {s['same_speakers']:>9d}/{s['calls']:<3d} {s['roles_right'] / s['speakers']:11.3f} "
              f"{s['matched'] / s['words']:10.3f} {s['worst'] / 1e6:10.3f}")
    print(f'({len(calls)} dev oral histories; renderings in {folder})' if a.keep else f'({len(calls)} dev oral histories)')

if __name__ == '__main__':
    main()
