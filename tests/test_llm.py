"""The LLM layer through the real `openai` client against the loopback OpenAI-compatible server on 127.0.0.1:
faults, retries, billing, cache, budget, structured-output fallbacks, Batch API, and grounding of every quote."""
import json
import pytest
from flexxray_nb.core import Settings
from loopback import LoopbackServer, ManualClock
from flexxray_nb.llm import LLM, BudgetExceeded
from flexxray_nb.hybrid import PassageScores, score_request
from flexxray_nb.companies import load_company
from flexxray_nb.quotes import load_corpus
from flexxray_nb.companies import company_settings
from flexxray_nb.batch import run_company
from flexxray_nb.parse import read_transcript

FX = load_company('FlexXray')
TRS, QUOTES = load_corpus(FX.transcript_dir())

@pytest.fixture
def srv():
    with LoopbackServer() as s: yield s

def make_llm(srv, tmp_path, waits=None, **kw):
    "A client on the loopback server whose sleeps are recorded, not slept (a 130 s retry-after must not stall tests)."
    async def sleep(s):
        if waits is not None: waits.append(s)
        if isinstance(srv.clock, ManualClock): srv.clock.advance(s)
    s = Settings(backend='openai', base_url=srv.base_url, cache_dir=str(tmp_path / 'cache'), **kw)
    return LLM(s, api_key='sk-test', sleep=sleep, timeout=kw.pop('timeout', 5.0) if 'timeout' in kw else 2.0)

def req(i=0):
    return score_request(FX.questions[i].question, QUOTES[:6], 'gpt-4o-mini')

FAULTS = [('429', dict(retry_after=1)), ('429', dict(retry_after=130)), ('429', dict(retry_after_ms=250)), ('500', {}),
          ('503', {}), ('slow', dict(delay=4.0)), ('drop', {}), ('malformed', {}), ('truncated', {})]

@pytest.mark.parametrize('kind,opts', FAULTS, ids=[f'{k}-{o}' for k, o in FAULTS])
def test_every_fault_completes_with_bounded_attempts(srv, tmp_path, kind, opts):
    waits = []
    llm = make_llm(srv, tmp_path, waits)
    srv.inject(kind, times=2, **opts)
    out = llm.run([req()])
    assert isinstance(out[0], PassageScores)
    row = llm.ledger[-1]
    assert row['attempts'] == 3 and row['outcome'] == 'ok'          # two faults, then the answer: every attempt counted
    assert len(srv.requests('/chat/completions')) == 3
    if kind == '429' and 'retry_after' in opts: assert waits[:2] == [opts['retry_after']] * 2   # the server's wait, even > 120 s
    if 'retry_after_ms' in opts: assert waits[:2] == [0.25, 0.25]
    if kind in ('500', 'drop'): assert all(0 < w <= 60 for w in waits)

def test_gives_up_after_max_retries_and_says_so(srv, tmp_path):
    llm = make_llm(srv, tmp_path, [], max_retries=2)
    srv.inject('500', times=10)
    assert llm.run([req()]) == [None]
    assert len(srv.requests('/chat/completions')) == 3
    assert llm.ledger[-1]['outcome'].startswith('error') and llm.ledger[-1]['attempts'] == 3

def test_length_refusal_and_invalid_output(srv, tmp_path):
    llm = make_llm(srv, tmp_path, [])
    srv.inject('length')
    assert isinstance(llm.run([req(0)])[0], PassageScores)            # retried once with a larger allowance
    srv.inject('invalid_json_content')
    assert isinstance(llm.run([req(1)])[0], PassageScores)            # one re-ask on output invalid for the schema
    assert 'not valid JSON for the schema' in json.dumps(srv.requests('/chat/completions')[-1]['body']['messages'])
    srv.inject('refusal')
    assert llm.run([req(2)]) == [None] and llm.ledger[-1]['outcome'] == 'refused'
    assert llm.ledger[-1]['attempts'] == 1                              # a refusal is not retried

def test_identical_requests_are_sent_once_and_cached(srv, tmp_path):
    llm = make_llm(srv, tmp_path)
    out = llm.run([req(3)] * 5)
    assert all(isinstance(o, PassageScores) for o in out)
    assert len(srv.requests('/chat/completions')) == 1                   # in flight once, billed once
    billed = sum(r['cost_usd'] for r in llm.ledger if not r['cache_hit'])
    fresh = make_llm(srv, tmp_path)                                      # a new process on the same cache
    fresh.run([req(3)])
    assert len(srv.requests('/chat/completions')) == 1 and fresh.metrics()['api_calls'] == 0
    assert billed > 0 and fresh.metrics()['cost_usd'] == 0

def test_fallback_to_json_object_then_prompt(tmp_path):
    with LoopbackServer(formats=('json_object',)) as srv:
        llm = make_llm(srv, tmp_path)
        assert isinstance(llm.run([req()])[0], PassageScores) and llm.response_format == 'json_object'
    with LoopbackServer(formats=()) as srv:
        llm = make_llm(srv, tmp_path / 'b')
        assert isinstance(llm.run([req()])[0], PassageScores) and llm.response_format == 'prompt'

def test_budget_stops_before_it_is_exceeded(srv, tmp_path):
    llm = make_llm(srv, tmp_path, max_cost_usd=0.0012)
    with pytest.raises(BudgetExceeded):
        for i in range(7): llm.run([req(i)])
    assert llm.spent <= 0.0012

def test_unknown_model_cost_is_unknown(srv, tmp_path):
    llm = make_llm(srv, tmp_path)
    r = req(); r.model = 'llama3.1:8b'
    llm.run([r])
    assert llm.ledger[-1]['cost_usd'] is None and llm.metrics()['unknown_cost_calls'] == 1

def run_fx(srv, tmp_path, **kw):
    s = company_settings('FlexXray', backend='openai', base_url=srv.base_url, cache_dir=str(tmp_path / 'cache'),
                         log_progress=False, **kw)
    return run_company('FlexXray', out=tmp_path / 'out', settings=s)

def assert_verbatim(results):
    texts = {}
    for q in results['questions']:
        for x in q['quotes']:
            if x['file'] not in texts: texts[x['file']] = read_transcript(x['file']).text
            assert texts[x['file']][x['start']:x['end']] == x['text']

@pytest.mark.parametrize('mode', ['ground', 'paraphrase', 'fabricate'])
def test_no_non_verbatim_quote_reaches_the_results(tmp_path, mode, monkeypatch):
    monkeypatch.setenv('OPENAI_API_KEY', 'sk-test')
    with LoopbackServer(mode=mode) as srv:
        r = run_fx(srv, tmp_path)
    assert_verbatim(r.results)
    assert sum(q['evidence'] == 'found' for q in r.results['questions']) >= 5
    if mode == 'fabricate': assert r.results['metrics']['quotes_rejected'] > 0

def test_rerun_makes_no_api_call(tmp_path, monkeypatch):
    monkeypatch.setenv('OPENAI_API_KEY', 'sk-test')
    with LoopbackServer() as srv:
        first = run_fx(srv, tmp_path)
        n = len(srv.journal)
        second = run_fx(srv, tmp_path)
    assert first.results['metrics']['api_calls'] > 10 and len(srv.journal) == n
    assert second.results['metrics']['api_calls'] == 0 and second.results['questions'] == first.results['questions']

def batch_run(srv, tmp_path, faults=()):
    for kind, opts in faults: srv.inject(kind, **opts)
    llm = make_llm(srv, tmp_path, mode='batch')
    return llm, llm.run([req(i) for i in range(7)])

def test_batch_mode_joins_on_custom_id_at_half_price(tmp_path):
    with LoopbackServer(clock=ManualClock()) as srv:
        llm, out = batch_run(srv, tmp_path)
        sync = make_llm(srv, tmp_path / 'sync').run([req(i) for i in range(7)])
    assert [o.model_dump() for o in out] == [o.model_dump() for o in sync]   # lines come back shuffled: joined by id
    rows = [r for r in llm.ledger if r['mode'] == 'batch']
    assert len(rows) == 7 and len(srv.requests('/batches', 'POST')) == 1
    from flexxray_nb.llm import call_cost
    assert all(r['cost_usd'] == call_cost(r['model'], dict(prompt_tokens=r['prompt_tokens'], completion_tokens=r['completion_tokens']),
                                          llm.s.prices, batch=True) for r in rows)

@pytest.mark.parametrize('fault', ['token_limit_exceeded', 'expired_partial'])
def test_failed_or_expired_batches_are_resubmitted(tmp_path, fault):
    with LoopbackServer(clock=ManualClock()) as srv:
        llm, out = batch_run(srv, tmp_path, [(fault, {})])
    assert all(isinstance(o, PassageScores) for o in out)
    assert len(srv.requests('/batches', 'POST')) >= 2
    assert len([r for r in llm.ledger if r['outcome'] == 'ok']) == 7        # each request billed once

def test_no_batches_endpoint_falls_back_to_sync(tmp_path):
    with LoopbackServer(batches=False) as srv:
        llm, out = batch_run(srv, tmp_path)
    assert all(isinstance(o, PassageScores) for o in out) and not llm.batches_supported
    assert {r['mode'] for r in llm.ledger} == {'sync'}

def test_ask_with_the_openai_backend_prints_only_exact_spans(tmp_path):
    from conftest import flexxray, jsonl, SAMPLES
    with LoopbackServer(mode='paraphrase') as srv:
        out = flexxray('ask', '-q', 'How fast is the turnaround?', '-q', 'What limits the market size?', '--top-k', '5',
                       '--backend', 'openai', '--base-url', srv.base_url, SAMPLES,
                       env={'OPENAI_API_KEY': 'sk-test', 'CACHE_DIR': str(tmp_path / 'cache')})
        assert len(srv.requests('/chat/completions')) >= 2 and srv.requests('/embeddings')
    rows = jsonl(out.stdout)
    assert {r['question'] for r in rows} == {'How fast is the turnaround?', 'What limits the market size?'}
    texts = {}
    for r in rows:
        if r['file'] not in texts: texts[r['file']] = read_transcript(r['file']).text
        assert texts[r['file']][r['start']:r['end']] == r['text'] and r['role'] == 'expert'
