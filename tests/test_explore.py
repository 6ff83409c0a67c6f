"""Asking the calls with the openai backend: the real `openai` client against the OpenAI-compatible server on
127.0.0.1 (tests/loopback.py). The model judges and ranks; the quotes stay exact spans of their transcripts; what the
model wrote (its answer, its stances) is marked as such and never shown as a quote; a failing endpoint leaves the
offline verdict standing."""
import html, re
import pytest
from loopback import LoopbackServer
from flexxray_nb.core import Settings
from flexxray_nb.llm import LLM
from flexxray_nb.companies import load_company
from flexxray_nb.explore import Calls

FX = load_company('FlexXray')
QUESTION = 'What do customers say about price increases?'

@pytest.fixture(scope='module')
def srv():
    with LoopbackServer() as s: yield s

def model_calls(srv, tmp_path, **kw):
    "The sample calls with a client on the loopback server (every test its own cache, so nothing is served from disk)."
    s = Settings(backend='openai', base_url=srv.base_url, cache_dir=str(tmp_path / 'cache'), max_retries=0, **kw)
    return Calls.load(FX.transcript_dir(), s, subject=[FX.name], llm=LLM(s, api_key='sk-test', timeout=5.0))

def quoted(page: str) -> list[str]:
    "The texts a page shows as quotes (inside quotation marks in a quote's span)."
    return [html.unescape(re.sub('<[^>]+>', '', m)) for m in re.findall(r'<span class="q">“(.*?)”</span>', page, re.S)]

def test_the_model_judges_and_its_answer_is_never_a_quote(srv, tmp_path):
    calls = model_calls(srv, tmp_path)
    before = len(srv.requests('/chat/completions'))
    res = calls.ask(QUESTION, top_k=5)
    assert len(srv.requests('/chat/completions')) >= before + 2 and srv.requests('/embeddings')
    assert res.attrs['evidence'] == 'found' and res.attrs['judged_by'] == 'model (gpt-4o-mini)', res.attrs
    assert 'the model (gpt-4o-mini) judged' in res.attrs['reason']
    for r in res.itertuples(): assert calls.transcripts[r.file].text[r.start:r.end] == r.text  # verbatim, whatever it returned
    assert res.attrs['answer'] and res.attrs['answer_by'] == 'model'
    page = res._repr_html_()
    assert 'Model-written summary (not a quote)' in page and html.escape(res.attrs['answer']) in page
    shown = quoted(page)
    assert shown == list(res.text) and res.attrs['answer'] not in ' '.join(shown)

def test_the_models_stances_are_marked(srv, tmp_path):
    calls = model_calls(srv, tmp_path)
    st = calls.stances(QUESTION)
    by_model = st[st.judged_by == 'model']
    assert len(by_model) >= 1 and set(st.judged_by) <= {'model', 'lexicon'}
    assert (by_model.quotes > 0).all()  # the model reads the stance of experts it was shown quotes of
    assert st._repr_html_().count('model-judged') == len(by_model)

def test_filters_narrow_what_the_model_sees(srv, tmp_path):
    calls = model_calls(srv, tmp_path)
    res = calls.ask(QUESTION, expert='Jordan Blake')
    assert set(res.expert) <= {'Jordan Blake (Former Chief Commercial Officer, FlexXray)'} and len(res)

def test_a_failing_endpoint_leaves_the_offline_verdict(srv, tmp_path):
    calls = model_calls(srv, tmp_path)
    srv.inject('500', times=100)
    try: res, nowhere = calls.ask(QUESTION, top_k=3), calls.ask('How do lithium brine royalties in Chile affect battery recycling margins?')
    finally: srv.faults.clear()
    assert res.attrs['judged_by'] == 'evidence rule (the model gave no verdict)' and res.attrs['evidence'] == 'found'
    assert not res.attrs['answer'] and 'Model-written' not in res._repr_html_()
    assert nowhere.attrs['evidence'] == 'none' and len(nowhere) == 0 and 'lithium' in nowhere.attrs['reason']
