"""The control panel as an analyst uses it: served by Voila on 127.0.0.1, driven in Debian's chromium through Python
Playwright. Widgets render, the "Max quotes" slider moves with the keyboard, Run produces the answers on the page and a
run that used the slider's value, with no script errors and nothing fetched from outside this machine. Then the Ask
box: a typed question gives ranked quotes in their context, the expert filter narrows them, a ticked quote lands in the
run's workbook and results.json, and a question no call discusses says why.

`docs/panel.png` (the README screenshot) is rewritten when it is missing or when `FLEXXRAY_SCREENSHOT=1`."""
import json, os, shutil, socket, subprocess, time, urllib.request
import openpyxl
from types import SimpleNamespace
import pytest
from conftest import ROOT
from flexxray_nb.parse import read_transcript

pw = pytest.importorskip('playwright.sync_api')
pytest.importorskip('voila')
psutil = pytest.importorskip('psutil')
CHROMIUM = shutil.which('chromium')
if not CHROMIUM: pytest.skip('no chromium on PATH', allow_module_level=True)

CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--disable-sync', '--no-first-run']
LOCAL = ('http://127.0.0.1:', 'ws://127.0.0.1:', 'data:', 'blob:', 'about:')
QUESTION = "What limits FlexXray's Total Addressable Market (TAM)?"
MAX_QUOTES = 3
ASK = 'What do customers say about price increases?'  # no company question: asked of the run's calls
EXPERT = 'Jordan Blake (Former Chief Commercial Officer, FlexXray)'
NOWHERE = 'How do lithium brine royalties in Chile affect battery recycling margins?'

def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def wait_until_answering(url, proc, log, timeout=60):
    "Poll a static file until Voila answers; fail early with its log if it exited."
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None: pytest.fail(f'voila exited {proc.returncode}:\n{log.read_text()[-3000:]}')
        try:
            with urllib.request.urlopen(url + 'voila/static/voila.js', timeout=2): return
        except OSError: time.sleep(0.25)
    pytest.fail(f'voila did not answer in {timeout} s:\n{log.read_text()[-3000:]}')

def comm_update(frame) -> dict | None:
    "The widget state a kernel websocket frame sends, if it is a widget update (v1 binary protocol or plain JSON)."
    if isinstance(frame, bytes):  # n offsets (uint64 LE), then channel, header, parent, metadata, content, buffers
        n = int.from_bytes(frame[:8], 'little')
        offs = [int.from_bytes(frame[8 * i:8 * i + 8], 'little') for i in range(1, n + 1)] + [len(frame)]
        header, content = json.loads(frame[offs[1]:offs[2]]), json.loads(frame[offs[4]:offs[5]])
    else: msg = json.loads(frame); header, content = msg['header'], msg['content']
    data = content.get('data', {}) if header.get('msg_type') == 'comm_msg' else {}
    return data.get('state') if data.get('method') == 'update' else None

def stop(proc):
    "Stop Voila (it shuts its kernels down on SIGTERM), then any of its processes still alive, by pid."
    kids = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
    proc.terminate()
    try: proc.wait(15)
    except subprocess.TimeoutExpired: proc.kill(); proc.wait()
    for p in psutil.wait_procs(kids, timeout=5)[1]: p.kill()

@pytest.fixture(scope='module')
def voila(tmp_path_factory):
    "Voila serving the panel exactly as `flexxray panel` does, on a free 127.0.0.1 port, reports going to a tmp dir."
    from flexxray_nb.cli import voila_command
    work = tmp_path_factory.mktemp('panel')
    port, log = free_port(), work / 'voila.log'
    cmd, env = voila_command(port, work / 'reports')
    env = {**env, 'FLEXXRAY_CACHE_DIR': str(work / 'cache'), 'PYTHONUNBUFFERED': '1'}
    with open(log, 'w') as out:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f'http://127.0.0.1:{port}/'
        wait_until_answering(url, proc, log)
        yield SimpleNamespace(url=url, work=work, log=log)
    finally: stop(proc)

@pytest.fixture(scope='module')
def run(voila):
    "The panel in chromium: slider moved to MAX_QUOTES, Run clicked, answers shown; every request and error recorded."
    s = SimpleNamespace(remote={}, console_errors=[], page_errors=[], sent_states=[], work=voila.work)
    def route(r):
        if r.request.url.startswith(LOCAL): r.continue_()
        else: s.remote.setdefault(r.request.url); r.abort()
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(viewport=dict(width=1280, height=1400))
            ctx.route('**/*', route)
            page = s.page = ctx.new_page()
            page.on('request', lambda r: r.url.startswith(LOCAL) or s.remote.setdefault(r.url))
            page.on('websocket', lambda ws: ws.url.startswith(LOCAL) or s.remote.setdefault(ws.url))
            page.on('websocket', lambda ws: ws.on('framesent', lambda f: s.sent_states.append(comm_update(f))))
            page.on('console', lambda m: m.type == 'error' and s.console_errors.append(m.text))
            page.on('pageerror', lambda e: s.page_errors.append(str(e)))
            page.goto(voila.url, wait_until='load', timeout=120_000)  # returns once the kernel has run the notebook

            slider = page.locator('.widget-slider').filter(has=page.locator('label', has_text='Max quotes'))
            slider.wait_for(timeout=30_000)
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2", timeout=30_000)
            readout = slider.locator('.widget-readout')
            s.quotes_before = readout.inner_text()
            handle = slider.locator('.noUi-handle')
            handle.focus(); handle.press('Home')
            for _ in range(MAX_QUOTES - 1): handle.press('ArrowRight')
            s.quotes_after = readout.inner_text()
            # The front end holds back a widget's next update while the kernel is busy with its last one, but sends a
            # click at once: wait until the final value is on the wire, so the kernel has it before the click.
            for _ in range(200):
                if {'value': MAX_QUOTES} in s.sent_states: break
                page.wait_for_timeout(50)
            else: pytest.fail(f'the slider never sent value {MAX_QUOTES} to the kernel: {s.sent_states}')

            page.locator('button.widget-button[title="Run"]').click()
            page.locator('.widget-output h3', has_text=QUESTION).wait_for(timeout=90_000)
            page.locator('.widget-vbox h4', has_text='Role review').wait_for(timeout=10_000)
            page.wait_for_timeout(500)  # late comm messages: chart updates, progress
            # a chart is redrawn by clearing its output and showing the new figure: wait for both, final
            page.wait_for_function("""() => { const t = d => d.querySelector('.gtitle')?.textContent || '';
                const p = [...document.querySelectorAll('.js-plotly-plot')];
                return p.some(d => t(d).startsWith('API cost')) && p.some(d => t(d).startsWith('Throughput')
                    && (d.calcdata || []).length === 2 && d.calcdata.every(c => c.length > 1)) }""", timeout=30_000)
            s.text = page.inner_text('body')
        except pw.Error as e:
            pytest.fail(f'{e}\npage errors: {s.page_errors}\nconsole errors: {s.console_errors}\n'
                        f'voila log:\n{voila.log.read_text()[-3000:]}')
        else: yield s
        finally: browser.close()

def charts(page):
    "Each live figure as the browser has it: title, and points per trace."
    return page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(d => ({
        title: d.querySelector('.gtitle')?.textContent, points: (d.calcdata || []).map(c => c.length)}))""")

def test_slider_moved_by_keyboard(run):
    assert run.quotes_before != str(MAX_QUOTES)
    assert run.quotes_after == str(MAX_QUOTES)

def test_run_used_the_slider_value(run):
    res = json.loads((run.work / 'reports' / 'FlexXray' / 'results.json').read_text())
    per_question = [len(q['quotes']) for q in res['questions']]
    assert max(per_question) == MAX_QUOTES, per_question

def test_answers_and_review_shown(run):
    res = json.loads((run.work / 'reports' / 'FlexXray' / 'results.json').read_text())
    shown = ' '.join(run.text.split())
    for q in res['questions']:
        assert q['question'] in shown
        for x in q['quotes']: assert ' '.join(x['text'].split()) in shown
    assert 'expert-call analysis' in shown and 'Error:' not in shown
    assert run.page.locator('.widget-vbox .widget-dropdown select').count() > 1  # company + one per speaker
    bars = run.page.locator('.progress-bar')
    assert bars.first.evaluate('b => b.style.width') == '100%'      # the panel's own bar
    assert run.page.locator('.progress-bar-success').count() >= 1   # tqdm.auto's bar of the run, finished, in the panel

def test_no_page_errors(run):
    assert run.page_errors == []
    assert run.console_errors == []

def test_voila_page_asks_for_nothing_remote(run):
    assert list(run.remote) == []

def test_live_charts_show_the_run(run):
    progress, cost = charts(run.page)
    assert progress['title'].startswith('Throughput and memory')
    assert len(progress['points']) == 2 and min(progress['points']) > 1  # done and RSS over the run's timeline
    assert cost['title'].startswith('API cost')

def test_screenshot(run, tmp_path):
    shot = tmp_path / 'panel.png'
    run.page.screenshot(path=str(shot))  # the viewport: controls, summary, charts, first answers
    assert shot.stat().st_size > 20_000
    dest = ROOT / 'docs' / 'panel.png'
    if os.environ.get('FLEXXRAY_SCREENSHOT') == '1' or not dest.exists():
        dest.parent.mkdir(exist_ok=True)
        shutil.copy(shot, dest)

def shown_quotes(page) -> list[dict]:
    "The Ask box's results as the page shows them: speaker, the quote, and the turns around it."
    return page.evaluate("""() => [...document.querySelectorAll('.fx .ask')].map(d => ({
        expert: d.querySelector('p.src b').textContent, quote: d.querySelector('.q').textContent,
        marks: d.querySelectorAll('mark').length, turns: [...d.querySelectorAll('p.turn')].map(p => p.textContent)}))""")

def sent(s, state: dict, page):
    "Wait until the page has sent this widget state to the kernel."
    for _ in range(200):
        if state in s.sent_states: return
        page.wait_for_timeout(50)
    pytest.fail(f'the page never sent {state} to the kernel')

@pytest.fixture(scope='module')
def asked(run):
    "The Ask box on the same page after the run: a question, the expert filter, a pick, a question nobody discusses."
    page, s = run.page, SimpleNamespace()
    try:
        box = page.locator('.widget-text').filter(has=page.locator('label', has_text='Ask the calls')).locator('input')
        box.fill(ASK); box.press('Enter')
        page.locator('.fx .ask').first.wait_for(timeout=90_000)  # the run's calls are read and indexed at the first question
        s.all = shown_quotes(page)
        s.verdict = page.locator('.fx.verdict').inner_text()
        expert = page.locator('.widget-dropdown').filter(has=page.locator('label', has_text='Expert')).locator('select')
        expert.select_option(label=EXPERT)
        page.wait_for_function("""e => { const b = [...document.querySelectorAll('.fx .ask p.src b')];
            return b.length > 0 && b.every(x => x.textContent === e) }""", arg=EXPERT, timeout=30_000)
        s.filtered = shown_quotes(page)
        page.locator('.widget-hbox').filter(has=page.locator('.ask')).first.locator('input[type=checkbox]').check()
        sent(run, {'value': True}, page)
        page.locator('button.widget-button[title="Add selected to picks"]').click()
        page.get_by_text('1 analyst pick saved').wait_for(timeout=30_000)
        expert.select_option(label='All experts')
        box.fill(NOWHERE); box.press('Enter')
        nowhere = page.locator('.fx.verdict .answer.none')
        nowhere.wait_for(timeout=30_000)
        s.nowhere = nowhere.inner_text()
        s.after_nowhere = shown_quotes(page)
        page.wait_for_timeout(500)
    except pw.Error as e:
        pytest.fail(f'{e}\npage errors: {run.page_errors}\nconsole errors: {run.console_errors}')
    return s

def test_ask_shows_ranked_quotes_in_context(asked):
    assert 'discussed in the answers: ' in asked.verdict and 'price' in asked.verdict, asked.verdict
    assert len(asked.all) >= 3 and len({q['expert'] for q in asked.all}) >= 2
    assert all(q['turns'] for q in asked.all), asked.all  # each with the turns around it
    assert all(q['marks'] for q in asked.all), asked.all  # the question's words highlighted, in the quote or what prompted it

def test_expert_filter_narrows_the_quotes(asked):
    assert {q['expert'] for q in asked.filtered} == {EXPERT}
    mine = [q['quote'] for q in asked.all if q['expert'] == EXPERT]
    assert mine and asked.filtered[0]['quote'] == mine[0]  # the same best quote as in the whole ranking

def test_the_pick_is_in_the_workbook_and_results(asked, run):
    out = run.work / 'reports' / 'FlexXray'
    picked = asked.filtered[0]['quote'].strip('“”')
    picks = json.loads((out / 'results.json').read_text())['analyst_picks']
    assert [(p['question'], p['expert']) for p in picks] == [(ASK, EXPERT)]
    assert ' '.join(picks[0]['text'].split()) == ' '.join(picked.split())
    assert read_transcript(picks[0]['file']).text[picks[0]['start']:picks[0]['end']] == picks[0]['text']  # verbatim
    ws = openpyxl.load_workbook(out / 'analysis.xlsx')['Analyst picks']
    rows = [dict(zip([c.value for c in ws[1]], [c.value for c in r])) for r in ws.iter_rows(min_row=2)]
    assert [(r['question'], r['expert'], r['text']) for r in rows] == [(ASK, EXPERT, picks[0]['text'])]

def test_a_question_nobody_discusses_says_why(asked):
    assert asked.nowhere.startswith('No call discusses this') and 'lithium' in asked.nowhere, asked.nowhere
    assert asked.after_nowhere == []

def test_ask_without_errors_or_remote_requests(asked, run):
    assert run.page_errors == [] and run.console_errors == []
    assert list(run.remote) == []
