"""Hostile files and hostile names, generated at test time (small on disk): each gets its one-line error or warning, the
batch goes on, memory stays bounded, and nothing is written outside `--out`."""
import io, json, os, shutil, subprocess, time, zipfile
import psutil, pytest
from conftest import BIN, ROOT, SAMPLES, flexxray, jsonl

W = 'http://schemas.openxmlformats.org/wordprocessingml/2006/main'
SAMPLE = SAMPLES / 'GLG - Former VP Operations FlexXray - 2025-03-14.txt'
GOOD = 'Sarah Kim: How fast was the turnaround?\n\nDaniel Reyes: Usually within a day, trucks that night.\n'

def docx(path, body: str):
    "A minimal .docx whose body is `body` (WordprocessingML)."
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as z:
        z.writestr('[Content_Types].xml', '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>')
        z.writestr('word/document.xml', f'<w:document xmlns:w="{W}"><w:body>{body}</w:body></w:document>')

def inflating_docx(path, inflated_mb: int):
    "A few-MB .docx whose document.xml inflates to `inflated_mb` MB, its zip directory honest about it."
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr('[Content_Types].xml', 'x')
        with z.open('word/document.xml', 'w', force_zip64=True) as f:
            f.write(f'<w:document xmlns:w="{W}"><w:body>'.encode())
            chunk = b'<w:p><w:r><w:t>a</w:t></w:r></w:p>' * 30_000  # about 1 MB
            for _ in range(inflated_mb): f.write(chunk)
            f.write(b'</w:body></w:document>')

def aes_pdf(path):
    "A PDF encrypted with AES-256 and an empty user password, as document systems export them."
    from fpdf import FPDF
    import pypdf
    pdf = FPDF(); pdf.add_page(); pdf.set_font('Helvetica', size=11)
    for line in GOOD.split('\n\n'): pdf.multi_cell(0, 6, line.strip(), new_x='LMARGIN', new_y='NEXT'); pdf.ln(3)
    w = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(bytes(pdf.output()))))
    w.encrypt(user_password='', owner_password='owner-secret', algorithm='AES-256')
    with open(path, 'wb') as f: w.write(f)

def hostile_folder(d):
    "One file of each hostile kind, and a good call; returns {file name: expected word in its error, or None}."
    (d / 'good.txt').write_text(GOOD)
    inflating_docx(d / 'bomb.docx', 1000)
    with open(d / 'sparse.txt', 'wb') as f: f.truncate(8 * 10**9)
    (d / 'mixed.txt').write_bytes('Sarah Kim: Caf\u00e9 in M\u00fcnchen?\n\n'.encode() + 'Daniel Reyes: It\u2019s fine.\n'.encode('cp1252'))
    (d / 'captions.vtt').write_text('WEBVTT\n\n1\n00:00:01.000 --> 00:00:02.000\n<v Sarah Kim>How fast?</v>\n\n'
                                    '2\n00:0x:02.000 --> 00:00:04.000\n<v Daniel Reyes>Within a day.</v>\n\n3\nstray words\n')
    aes_pdf(d / 'aes.pdf')
    docx(d / 'controls.docx', '<w:p><w:r><w:rPr><w:b/></w:rPr><w:t>Sarah Kim:</w:t></w:r><w:r><w:t xml:space="preserve"> How fast</w:t></w:r>'
         '<w:ins><w:r><w:t xml:space="preserve"> and how cheap</w:t></w:r></w:ins><w:del><w:r><w:delText> or not</w:delText></w:r></w:del>'
         '<w:r><w:t>?</w:t></w:r></w:p><w:sdt><w:sdtContent><w:p><w:r><w:rPr><w:b/></w:rPr><w:t>Daniel Reyes:</w:t></w:r>'
         '<w:smartTag><w:r><w:t xml:space="preserve"> Same day</w:t></w:r></w:smartTag><w:fldSimple w:instr="X">'
         '<w:r><w:t>, usually.</w:t></w:r></w:fldSimple></w:p></w:sdtContent></w:sdt>')
    (d / 'many.txt').write_text(''.join(f'Speaker {i % 2}: line {i}\n' for i in range(300)))
    (d / 'evil\nname\x1b[31m.txt').write_text('')
    (d / 'sub').mkdir(); (d / 'sub' / 'loop').symlink_to(d)
    (d / 'gone.txt').symlink_to(d / 'nowhere.txt')
    os.mkfifo(d / 'pipe.txt')
    return {'good.txt': None, 'bomb.docx': 'max_docx_xml_mb', 'sparse.txt': 'max_file_mb', 'mixed.txt': None,
            'captions.vtt': None, 'aes.pdf': None, 'controls.docx': None, 'many.txt': 'max_turns', 'evil\nname\x1b[31m.txt': 'empty'}

def test_hostile_files_each_get_one_line_and_the_batch_goes_on(tmp_path):
    want = hostile_folder(tmp_path)
    res = flexxray('parse', tmp_path, env={'FLEXXRAY_MAX_TURNS': '100'})
    rows = {os.path.basename(r['file']): r for r in jsonl(res.stdout)}
    assert set(rows) == set(want)  # the FIFO, the broken link and the loop are skipped, not read
    for name, word in want.items():
        err = rows[name]['error']
        assert (err is None) if word is None else (word in err and '\n' not in err), (name, err)
    text = lambda n: [rows[n]['text'][t['start']:t['end']] for t in rows[n]['turns']]
    assert text('controls.docx') == ['How fast and how cheap?', 'Same day, usually.']
    assert [t['speaker'] for t in rows['aes.pdf']['turns']] == ['Sarah Kim', 'Daniel Reyes']
    assert text('mixed.txt') == ['Caf\u00e9 in M\u00fcnchen?', 'It\u2019s fine.']
    assert text('captions.vtt') == ['How fast?', 'Within a day.']
    err = res.stderr.splitlines()
    assert not any('\x1b' in l for l in err) and len(err) == res.stderr.count('\n')
    for needle in ['mixed encodings', 'caption cue(s) with an unreadable time', 'caption block(s) without a timing line dropped',
                   'pipe.txt: not a regular file (a FIFO); skipped', 'gone.txt: broken link; skipped', 'loop: link to a folder, not followed; skipped',
                   'evil\\nname\\x1b[31m.txt: empty file', 'bomb.docx: .docx part word/document.xml inflates to 1,020 MB, over the 200 MB limit']:
        assert sum(needle in l for l in err) == 1, (needle, err)
    assert res.returncode == 0

def peak_rss_mb(args, env=None) -> tuple[float, int]:
    "Peak resident memory (MB) of a child process, polled, and its exit status."
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    proc, peak = psutil.Process(p.pid), 0
    while p.poll() is None:
        try: peak = max(peak, proc.memory_info().rss)
        except psutil.Error: break
        time.sleep(0.005)
    return peak / 1e6, p.wait()

def test_inflating_docx_memory_stays_bounded(tmp_path):
    inflating_docx(tmp_path / 'bomb.docx', 1000)
    assert (tmp_path / 'bomb.docx').stat().st_size < 10_000_000
    peak, rc = peak_rss_mb([str(BIN / 'flexxray'), 'parse', str(tmp_path / 'bomb.docx')])
    assert peak < 500 and rc == 1, (peak, rc)  # refused from the zip directory: nothing inflated
    peak, rc = peak_rss_mb([str(BIN / 'flexxray'), 'parse', str(tmp_path / 'bomb.docx')], env={'FLEXXRAY_MAX_DOCX_XML_MB': '2000', 'FLEXXRAY_MAX_TURNS': '20000'})
    assert peak < 500 and rc == 1, (peak, rc)  # allowed to inflate: streamed, and stopped at 5 x max_turns paragraphs

def test_hostile_folder_through_run(tmp_path):
    calls = tmp_path / 'calls'; calls.mkdir()
    want = hostile_folder(calls)
    shutil.copy(SAMPLE, calls / 'good2.txt')  # a real call, so the run has expert quotes to rank
    flexxray('run', '--company', 'FlexXray', '--transcripts', calls, '--out', tmp_path / 'out',
             env={'CACHE_DIR': str(tmp_path / 'cache'), 'FLEXXRAY_MAX_TURNS': '100'})
    res = json.loads((tmp_path / 'out' / 'FlexXray' / 'results.json').read_text())
    status = {os.path.basename(t['file']): t['status'] for t in res['transcripts']}
    assert {n for n, w in want.items() if w} == {n for n, s in status.items() if s == 'error'}
    assert status['good.txt'] == status['good2.txt'] == 'ok'

def files_outside(root, *inside) -> set:
    "Every path under `root` except those under the folders `inside`."
    return {p for p in root.rglob('*') if not any(p == i or i in p.parents for i in inside)}

def one_line_error(res, *needles):
    assert res.returncode == 2 and res.stderr.count('\n') == 1 and 'Traceback' not in res.stderr, res.stderr
    for n in needles: assert n in res.stderr, (n, res.stderr)

def test_bad_names_and_settings_get_one_line_and_write_nothing_outside_out(tmp_path):
    work = tmp_path / 'work'; work.mkdir()
    comp, out, calls = work / 'companies', work / 'out', work / 'calls'
    calls.mkdir(); (calls / 'a.txt').write_text(GOOD); (work / 'empty').mkdir(); (work / 'afile').write_text('x')
    env = {'CACHE_DIR': str(work / 'cache')}
    run = lambda *a, e=None: flexxray(*a, cwd=work, env={**env, **(e or {})}, check=False)
    assert run('new-company', '../../tmp/x', '--dest', comp).returncode == 0
    assert run('new-company', 'Acme "Quoted" Co\\', '--dest', comp).returncode == 0
    assert {p.name for p in comp.iterdir()} == {'tmp_x.toml', 'acme_quoted_co.toml'}
    listed = run('companies')
    assert '../../tmp/x' in listed.stdout and 'Acme "Quoted" Co\\' in listed.stdout and not listed.stderr
    before = files_outside(tmp_path, out, work / 'cache')
    one_line_error(run('run', '--company', '../../tmp/x', '--transcripts', calls, '--out', out), "'../../tmp/x'", 'cannot name a folder')
    one_line_error(run('run', '--company', '', '--out', out), "--company needs a company name, got ''")
    one_line_error(run('run', '--company', 'FlexXray', '--out', work / 'afile'), 'afile is a file, not a folder')
    one_line_error(run('run', '--company', 'FlexXray', '--transcripts', work / 'empty', '--out', out), 'no transcript files in')
    one_line_error(run('ask', '-q', 'Why?', calls, '--top-k', '-1'), "argument --top-k: must be at least 1, got '-1'")
    (comp / 'bad.toml').write_text('name = "Badset"\n[settings]\nmax_quotes = -5\n')
    one_line_error(run('run', '--company', 'Badset', '--transcripts', calls, '--out', out), 'bad.toml [settings]', 'max_quotes = -5')
    (comp / 'bad.toml').unlink()
    for ini, says in [('batch_size = 3\n', 'no [settings] section header'),
                      ('[settings]\nbatch_size = 3\nbatch_size = 4\n', "option 'batch_size' in section 'settings' already exists"),
                      ('[prices]\ngpt-4o-mini = -0.15, 0.075, 0.60\n', 'invalid setting prices.gpt-4o-mini.input')]:
        (work / 'settings.ini').write_text(ini)
        one_line_error(run('parse', calls), says)
    (work / 'settings.ini').unlink()
    assert files_outside(tmp_path, out, work / 'cache') == before and not out.exists()

def test_companies_differing_in_case_do_not_collide(tmp_path):
    comp = tmp_path / 'companies'; comp.mkdir()
    calls = tmp_path / 'calls'; calls.mkdir(); shutil.copy(SAMPLE, calls / 'a.txt')
    (comp / 'one.toml').write_text('name = "Acme"\n[questions.k.q]\nquestion = "How fast is the turnaround?"\n')
    (comp / 'two.toml').write_text('name = "acme"\n[questions.k.q]\nquestion = "How fast is the turnaround?"\n')
    flexxray('run', '--company', 'Acme,acme', '--transcripts', calls, '--out', tmp_path / 'out', cwd=tmp_path,
             env={'CACHE_DIR': str(tmp_path / 'cache')})
    got = {p.name: json.loads((p / 'results.json').read_text())['company'] for p in (tmp_path / 'out').iterdir()}
    assert got == {'Acme': 'Acme', 'acme': 'acme'}

def test_run_company_from_python_refuses_a_name_that_would_leave_out(tmp_path, monkeypatch):
    "The library refuses what the CLI refuses: a config whose name is a path never writes outside `out`."
    from flexxray_nb.batch import run_company
    comp, out, calls = tmp_path / 'companies', tmp_path / 'out', tmp_path / 'calls'
    comp.mkdir(); calls.mkdir(); (calls / 'a.txt').write_text(GOOD)
    (comp / 'x.toml').write_text('name = "../escaped"\n')
    monkeypatch.setenv('FLEXXRAY_COMPANIES', str(comp)); monkeypatch.setenv('CACHE_DIR', str(tmp_path / 'cache'))
    with pytest.raises(ValueError, match='cannot name a folder under'): run_company('../escaped', calls, out)
    assert not (tmp_path / 'escaped').exists() and not out.exists()
