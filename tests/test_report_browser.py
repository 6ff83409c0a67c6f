"""The rendered report in a real browser (Debian's chromium via Python Playwright): charts drawn, nothing fetched from
the network, no script errors, transcript text shown as text, no code or progress-bar debris.

`docs/report.png` (the README screenshot) is rewritten when it is missing or when `FLEXXRAY_SCREENSHOT=1`."""
import json, os, re, shutil
import pytest
from conftest import ROOT, SAMPLES, flexxray

pw = pytest.importorskip('playwright.sync_api')
CHROMIUM = shutil.which('chromium')
if not CHROMIUM: pytest.skip('no chromium on PATH', allow_module_level=True)

LOCAL_SCHEMES = ('file:', 'data:', 'blob:', 'about:')
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--disable-sync', '--no-first-run']
# Tags `report.py` writes into its `.fx` blocks; anything else there came from data.
FX_TAGS = {'DETAILS', 'SUMMARY', 'DIV', 'H2', 'H3', 'SPAN', 'B', 'BLOCKQUOTE', 'BR', 'P', 'TABLE', 'THEAD', 'TBODY', 'TR', 'TH', 'TD'}
SCRIPT = '<script>window.__pwned=1</script>'
IMG = '<img src=x onerror="window.__pwned=2">'
PLANTED = f'''FlexXray Expert Call: Former Scheduling Manager
Network: GLG
Date: July 1, 2025
Expert: Priya Natarajan, Former Scheduling Manager, FlexXray
Interviewer: Sam Ortiz, Associate, Harbor Peak Capital
FICTIONAL TRANSCRIPT: written for the flexxray_nb browser test. Not a real call; all names are invented.

[00:00:05] Sam Ortiz: Priya, thanks for joining. How fast could FlexXray turn a job around for a customer with product on hold?

[00:00:21] Priya Natarajan: Turnaround was the whole pitch. We would start the job the same day, often within 24 hours of the first call, because the customer's product is perishable and their warehouse space is full. One customer typed {SCRIPT} into our portal notes, and another pasted {IMG} into a ticket, and our system showed both as plain text. Fast turnaround and the release of held product within hours is what customers paid for.

[00:01:10] Sam Ortiz: And did that speed keep them coming back?

[00:01:18] Priya Natarajan: Yes. The rapid turnaround meant they released product before its shelf life ran out, so the inspection paid for itself, and they called us first the next time.
'''

squash = lambda s: ' '.join(s.split())

@pytest.fixture(scope='module')
def demo_report(tmp_path_factory):
    "The demo report, written once by the real console script."
    out = tmp_path_factory.mktemp('demo')
    flexxray('run', '--company', 'FlexXray', '--out', out)
    return out / 'FlexXray'

@pytest.fixture(scope='module')
def browser():
    with pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()

class Visit:
    "A report opened in a fresh page, with every remote request, console error and page error recorded."
    def __init__(self, browser, html):
        self.remote, self.console_errors, self.page_errors = {}, [], []  # remote: URLs, once each
        self.ctx = browser.new_context(viewport=dict(width=1280, height=1600))
        self.ctx.route('**/*', self._route)
        self.page = self.ctx.new_page()
        # `request` also sees what routing may not (service workers, preloads); websockets never are local
        self.page.on('request', lambda r: r.url.startswith(LOCAL_SCHEMES) or self.remote.setdefault(r.url))
        self.page.on('websocket', lambda ws: self.remote.setdefault(ws.url))
        self.page.on('console', lambda m: m.type == 'error' and self.console_errors.append(m.text))
        self.page.on('pageerror', lambda e: self.page_errors.append(str(e)))
        self.page.goto(html.as_uri(), wait_until='load')
        self.page.wait_for_function("""() => [...document.querySelectorAll('.plotly-graph-div')]
                                       .every(d => d.querySelector('.main-svg'))""", timeout=20_000)
        self.page.wait_for_timeout(300)  # let late handlers (img onerror, plotly relayout) run
        self.text = squash(self.page.inner_text('body'))

    def _route(self, route):
        url = route.request.url
        if url.startswith(LOCAL_SCHEMES): route.continue_()
        else: self.remote.setdefault(url); route.abort()

    def close(self): self.ctx.close()

def visit(browser, html):
    v = Visit(browser, html)
    try: yield v
    finally: v.close()

@pytest.fixture(scope='module')
def demo(browser, demo_report): yield from visit(browser, demo_report / 'report.html')

def test_charts_drawn(demo):
    charts = demo.page.evaluate("""() => [...document.querySelectorAll('.plotly-graph-div')].map(d => ({
        plotly: d.classList.contains('js-plotly-plot'), svgs: d.querySelectorAll('.main-svg').length,
        // data marks, or the annotation an empty-state chart writes instead
        marks: d.querySelectorAll('.main-svg .trace, .main-svg .point, .main-svg .slice, .main-svg .hm, .main-svg .annotation').length,
        w: d.getBoundingClientRect().width, h: d.getBoundingClientRect().height}))""")
    assert len(charts) >= 3, charts
    drawn = [c for c in charts if c['plotly'] and c['svgs'] and c['marks'] and c['w'] > 100 and c['h'] > 100]
    assert len(drawn) == len(charts), charts

def test_offline_and_error_free(demo):
    assert list(demo.remote) == []
    assert demo.console_errors == []
    assert demo.page_errors == []

def test_transcript_text_is_text(demo, demo_report):
    res = json.loads((demo_report / 'results.json').read_text())
    shown = [q['quotes'][0]['text'] for q in res['questions'] if q['quotes']]
    assert shown
    for t in shown: assert squash(t) in demo.text
    tags = demo.page.evaluate("() => [...new Set([...document.querySelectorAll('.fx *')].map(e => e.tagName))]")
    assert set(tags) <= FX_TAGS, set(tags) - FX_TAGS

def test_no_code_or_progress_debris(demo):
    assert demo.page.locator('.jp-CodeCell .jp-InputArea, .jp-InputPrompt, .jp-OutputPrompt').count() == 0
    assert demo.page.locator('.jp-CodeCell .highlight').count() == 0
    for code in ('import ', 'from flexxray_nb', 'display(HTML', '.show()', 'Traceback'): assert code not in demo.text
    assert not re.search(r'\d\s*(it/s|s/it)|\d%\|', demo.text), re.search(r'.{40}(it/s|s/it|%\|).{40}', demo.text)
    assert 'Loading widget' not in demo.text

def test_screenshot(demo, tmp_path):
    shot = tmp_path / 'report.png'
    demo.page.screenshot(path=str(shot))  # the viewport: the report's top part
    assert shot.stat().st_size > 20_000
    dest = ROOT / 'docs' / 'report.png'
    if os.environ.get('FLEXXRAY_SCREENSHOT') == '1' or not dest.exists():
        dest.parent.mkdir(exist_ok=True)
        shutil.copy(shot, dest)

def test_planted_markup_stays_text(browser, tmp_path):
    src = tmp_path / 'calls'
    shutil.copytree(SAMPLES, src)
    (src / 'GLG - Former Scheduling Manager FlexXray - 2025-07-01.txt').write_text(PLANTED, encoding='utf-8')
    flexxray('run', '--company', 'FlexXray', '--transcripts', src, '--out', tmp_path / 'out')
    for v in visit(browser, tmp_path / 'out' / 'FlexXray' / 'report.html'):
        assert v.page.evaluate('typeof window.__pwned') == 'undefined'
        assert SCRIPT in v.text and IMG in v.text
        assert v.page.locator('.fx img, .fx script, img[src="x"]').count() == 0
        assert list(v.remote) == [] and v.page_errors == []
