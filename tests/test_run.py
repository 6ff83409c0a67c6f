"""`flexxray run` end to end as the contract describes it, several companies side by side, the documented papermill
command, and the shared contract checker on the real console script."""
import json, os, subprocess, sys
import pytest
from openpyxl import load_workbook
from conftest import ROOT, SHARED, BIN, flexxray

def test_two_companies_side_by_side(tmp_path):
    comp = tmp_path / 'companies'; comp.mkdir()
    flexxray('new-company', 'Acme Labs', '--dest', comp, '--transcripts', ROOT / 'flexxray_nb' / 'samples', cwd=tmp_path)
    listed = flexxray('companies', cwd=tmp_path).stdout
    assert 'Acme Labs' in listed and 'FlexXray' in listed
    flexxray('run', '--company', 'FlexXray,Acme Labs', '--out', tmp_path / 'out', cwd=tmp_path, env={'CACHE_DIR': str(tmp_path / 'cache')})
    for name in ('FlexXray', 'Acme Labs'):
        d = tmp_path / 'out' / name
        assert {p.name for p in d.iterdir()} >= {'report.ipynb', 'report.html', 'analysis.xlsx', 'results.json'}
        res = json.loads((d / 'results.json').read_text())
        assert res['company'] == name and res['metrics']['succeeded'] == res['metrics']['transcripts'] > 8
    acme = json.loads((tmp_path / 'out' / 'Acme Labs' / 'results.json').read_text())
    assert acme['questions'][0]['question'] == "What is Acme Labs's market position, and what evidence shows it?"

def test_workbook_sheets_hold_their_quotes(tmp_path):
    flexxray('run', '--company', 'FlexXray', '--out', tmp_path, '--max-quotes', '4', '--executor', 'process', '--workers', '3',
             env={'CACHE_DIR': str(tmp_path / 'cache')})
    perf = json.loads((tmp_path / 'FlexXray' / 'results.json').read_text())['metrics']['performance']
    assert (perf['executor'], perf['workers'], perf['processed']) == ('process', 3, 11)  # the options reach the run
    wb = load_workbook(tmp_path / 'FlexXray' / 'analysis.xlsx')
    assert wb.sheetnames[:3] == ['Key Takeaways', 'Strengths & Weaknesses', 'Quotes Summary']
    assert {'Transcripts', 'Speakers', 'Grid', 'Costs', 'Errors', 'Run settings'} <= set(wb.sheetnames)
    kt = wb['Key Takeaways']
    header = [c.value for c in kt[1]]
    quotes = [r[header.index('quote')] for r in kt.iter_rows(min_row=2, values_only=True)]
    assert sum(bool(q) for q in quotes) >= 3 * 2  # three questions, quotes for each
    assert kt.freeze_panes == 'A2' and kt.auto_filter.ref
    settings = {r[0]: r[1] for r in wb['Run settings'].iter_rows(min_row=2, values_only=True)}
    assert settings['max_quotes'] == '4' and settings['executor'] == 'process' and not any('api_key' in k for k in settings)

def test_documented_papermill_command(tmp_path):
    out = tmp_path / 'out.ipynb'
    subprocess.run([str(BIN / 'papermill'), str(ROOT / 'flexxray_nb' / 'templates' / 'report.ipynb'), str(out), '-k', 'python3',
                    '-p', 'company', 'FlexXray', '-p', 'out_dir', str(tmp_path / 'reports')], check=True, capture_output=True,
                   env={**os.environ, 'CACHE_DIR': str(tmp_path / 'cache')}, timeout=300)
    assert (tmp_path / 'reports' / 'FlexXray' / 'results.json').is_file()
    bad = subprocess.run([str(BIN / 'papermill'), str(ROOT / 'flexxray_nb' / 'templates' / 'report.ipynb'), str(tmp_path / 'bad.ipynb'),
                          '-k', 'python3', '-p', 'batch_size', 'ten'], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and 'batch_size must be a number' in (tmp_path / 'bad.ipynb').read_text()

def test_shared_contract_checker(tmp_path):
    tool = SHARED / 'tools' / 'check_contract.py'
    if not tool.is_file(): pytest.skip('no ../shared/tools in this clone')
    flexxray('run', '--company', 'FlexXray', '--out', tmp_path, env={'CACHE_DIR': str(tmp_path / 'cache')})
    res = subprocess.run([sys.executable, str(tool), '--flexxray', str(BIN / 'flexxray'), '--results',
                          str(tmp_path / 'FlexXray' / 'results.json')], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count('ok ') == 3

def test_an_unavailable_endpoint_is_reported_everywhere(tmp_path, monkeypatch, capsys):
    "A dead endpoint: the run completes offline (exit 0) and the summary line, the report's first screen, run.log and\nresults.json say the LLM was unavailable; the caller's environment is as it was (the kernel gets its own)."
    import socket
    from flexxray_nb.cli import main
    with socket.socket() as so: so.bind(('127.0.0.1', 0)); port = so.getsockname()[1]   # nothing listens there
    monkeypatch.setenv('OPENAI_API_KEY', 'sk-test'); monkeypatch.setenv('MAX_RETRIES', '1')
    monkeypatch.setenv('CACHE_DIR', str(tmp_path / 'cache'))
    before = dict(os.environ)
    code = main(['run', '--company', 'FlexXray', '--backend', 'openai', '--base-url', f'http://127.0.0.1:{port}/v1', '--out', str(tmp_path)])
    assert code == 0 and dict(os.environ) == before
    res = json.loads((tmp_path / 'FlexXray' / 'results.json').read_text())
    m = res['metrics']
    assert (m['llm_status'], m['api_calls']) == ('unavailable', 0) and m['api_attempts'] >= 2
    line = f"LLM unavailable after {m['api_attempts']} attempts: answers are local"
    assert m['llm_message'].startswith(line)
    assert line in capsys.readouterr().out
    assert line in (tmp_path / 'FlexXray' / 'run.log').read_text()
    page = (tmp_path / 'FlexXray' / 'report.html').read_text()
    assert f'<p class="flag">{line}' in page and page.index(line) < page.index('<h3>')   # on the first screen
    assert sum(q['evidence'] == 'found' for q in res['questions']) >= 5                      # answered offline

def test_report_stays_bounded_as_calls_grow(tmp_path):
    "Past 25 calls, the HTML report shows the grid of the 25 the answers quote most; the workbook and results.json, all."
    sys.path.insert(0, str(ROOT / 'benchmarks'))
    from make_corpus import make_corpus
    make_corpus(40, tmp_path / 'calls', seed=9, words=900)
    flexxray('run', '--company', 'FlexXray', '--transcripts', tmp_path / 'calls', '--out', tmp_path / 'out',
             env={'CACHE_DIR': str(tmp_path / 'cache')})
    d = tmp_path / 'out' / 'FlexXray'
    html, nb = (d / 'report.html').read_text(encoding='utf-8'), (d / 'report.ipynb').read_text(encoding='utf-8')
    for page in (html, nb):
        assert page.count('<details>') == 25 and 'The 25 calls the answers quote most, of 40' in page
    assert len(json.loads((d / 'results.json').read_text())['grid']) == 40
    assert load_workbook(d / 'analysis.xlsx')['Grid'].max_row == 41
    assert 'plotly.js v' not in html and 'DecompressionStream' in html  # plotly.js travels gzipped
