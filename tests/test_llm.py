"""The LLM layer through the real `openai` client against the loopback OpenAI-compatible server on 127.0.0.1:
faults, retries, billing, cache, budget, structured-output fallbacks, Batch API, and grounding of every quote."""
import json
import pytest
from flexxray_nb.core import Settings
from loopback import LoopbackServer, ManualClock
from flexxray_nb.llm import LLM, LLMError, call_cost
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

def make_llm(srv, tmp_path, waits=None, clock=None, api_key='sk-test', timeout=2.0, **kw):
    "A client on the loopback server whose sleeps are recorded, not slept (a 130 s retry-after must not stall tests)."
    async def sleep(s):
        if waits is not None: waits.append(s)
        if isinstance(srv.clock, ManualClock): srv.clock.advance(s)
        if clock is not None: clock.advance(s)
    s = Settings(backend='openai', base_url=srv.base_url, cache_dir=str(tmp_path / 'cache'), log_progress=False, **kw)
    return LLM(s, api_key=api_key, sleep=sleep, clock=clock, timeout=timeout)

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
        assert isinstance(llm.run([req()])[0], PassageScores) and llm.response_format('gpt-4o-mini') == 'json_object'
    with LoopbackServer(formats=()) as srv:
        llm = make_llm(srv, tmp_path / 'b')
        assert isinstance(llm.run([req()])[0], PassageScores) and llm.response_format('gpt-4o-mini') == 'prompt'
        assert llm.response_format('gpt-4o') == 'json_schema'   # remembered per model

def test_concurrent_refusals_step_down_one_format_each(tmp_path):
    "Five requests refused json_schema at once all go on with json_object: none skips to the prompted schema."
    with LoopbackServer(formats=('json_object',)) as srv:
        llm = make_llm(srv, tmp_path)
        out = llm.run([req(i) for i in range(5)])
        sent = [e['body'].get('response_format', {}).get('type') for e in srv.requests('/chat/completions')]
    assert all(isinstance(o, PassageScores) for o in out)
    assert sorted(sent) == ['json_object'] * 5 + ['json_schema'] * 5 and llm.response_format('gpt-4o-mini') == 'json_object'
    assert [r['attempts'] for r in llm.ledger] == [2] * 5

def budget_request(i):
    "A request of about 1,000 prompt tokens and 50 output tokens at most: ~$0.00015 spent, $0.00018 held."
    from flexxray_nb.llm import LLMRequest
    text = f'Question: request {i}\n' + 'The turnaround was fast and the pricing was fair. ' * 78
    return LLMRequest('gpt-4o-mini', [{'role': 'user', 'content': text}], max_tokens=50, stage='score')

def test_concurrent_requests_stay_within_the_budget(srv, tmp_path):
    "The issue's case: a $0.0002 budget, ten requests of ~$0.00015 at once. Checking spent + this request sent all ten."
    llm = make_llm(srv, tmp_path, max_cost_usd=0.0002)
    out = llm.run([budget_request(i) for i in range(10)])
    sent = srv.requests('/chat/completions')
    assert len(sent) == 1 and sum(o is not None for o in out) == 1        # the paid answer is kept
    assert 0.0001 < llm.spent <= 0.0002 and llm.spent == pytest.approx(llm.metrics()['cost_usd'], abs=1e-6) and llm.budget.held == 0
    assert llm.stopped == 'budget' and llm.status.stages['score'] == dict(answered=1, failed=0, not_sent=9)
    assert 'budget $0.000200 reached' in llm.metrics()['llm_message']

def test_a_budget_makes_room_as_answers_come(srv, tmp_path):
    "Holds are released on each answer: with room for two, two of ten concurrent requests are sent and paid, never more."
    llm = make_llm(srv, tmp_path, max_cost_usd=0.00035)
    out = llm.run([budget_request(i) for i in range(10)])
    assert sum(o is not None for o in out) == len(srv.requests('/chat/completions')) == 2 and llm.spent <= 0.00035

def test_every_billed_attempt_is_recorded(srv, tmp_path):
    "A `length` reply (billed) then four 500s: one ledger row with the reply's cost and all five sends."
    llm = make_llm(srv, tmp_path, [], max_retries=3)
    srv.inject('length'); srv.inject('500', times=4)
    assert llm.run([req()]) == [None]
    row, sends = llm.ledger[-1], srv.requests('/chat/completions')
    assert len(sends) == 5 and row['attempts'] == 5 and row['outcome'].startswith('error: failed after 5 attempts')
    assert row['completion_tokens'] > 0 and row['cost_usd'] == call_cost('gpt-4o-mini', row | {'prompt_tokens_details': {}}, llm.s.prices) > 0
    m = llm.metrics()
    assert (m['api_calls'], m['api_attempts']) == (0, 5) and m['cost_usd'] == pytest.approx(llm.spent, abs=1e-6) and llm.spent > 0

def test_refusals_and_reasks_are_billed(srv, tmp_path):
    llm = make_llm(srv, tmp_path)
    srv.inject('invalid_json_content'); srv.inject('invalid_json_content')   # invalid, re-asked, invalid again
    assert llm.run([req(0)]) == [None]
    srv.inject('refusal')
    assert llm.run([req(1)]) == [None]
    invalid, refused = llm.ledger[-2:]
    assert (invalid['outcome'], invalid['attempts'], refused['outcome'], refused['attempts']) == ('invalid', 2, 'refused', 1)
    clean = make_llm(srv, tmp_path / 'clean'); clean.run([req(0)])
    assert invalid['prompt_tokens'] > 2 * clean.ledger[-1]['prompt_tokens']          # both sends, the re-ask the longer
    assert all(r['cost_usd'] > 0 for r in (invalid, refused)) and llm.metrics()['api_calls'] == 2

def test_retries_take_a_rate_limiter_token(srv, tmp_path):
    "At 6 requests a minute (a burst of one), each retry waits for its token: two 500s cost two 10-second waits."
    clock, waits = ManualClock(0.0), []
    llm = make_llm(srv, tmp_path, waits, clock=clock, requests_per_minute=6)
    srv.inject('500', times=2)
    assert isinstance(llm.run([req()])[0], PassageScores)
    assert len(srv.requests('/chat/completions')) == 3 and sum(waits) >= 20   # backoffs alone would be under 2 s

@pytest.mark.parametrize('kind,opts,stop', [('429', dict(code='insufficient_quota'), 'quota'), ('401', {}, 'credentials'),
                                            ('403', {}, 'credentials')])
def test_quota_and_refused_keys_stop_at_once(srv, tmp_path, kind, opts, stop):
    llm = make_llm(srv, tmp_path, [], max_concurrency=1)
    srv.inject(kind, **opts)
    assert llm.run([req(i) for i in range(3)]) == [None] * 3
    assert len(srv.requests('/chat/completions')) == 1 and llm.stopped == stop           # no retry, nothing more sent
    m = llm.metrics()
    assert (m['api_calls'], m['api_attempts'], m['llm_status']) == (0, 1, stop)
    assert m['llm_message'].startswith('LLM stopped after 1 attempt: answers are local (HTTP ')
    assert llm.status.stages['score'] == dict(answered=0, failed=1, not_sent=2)

def test_echoed_keys_stay_out_of_the_ledger_and_the_status(srv, tmp_path):
    "A server that echoes the key whole in its 500s and masked (OpenAI's way) in its 403: only `sk-[redacted]` is kept."
    key = 'sk-proj-PLANTED0123456789abcdefSECRET'
    llm = make_llm(srv, tmp_path, [], api_key=key, max_retries=1, max_concurrency=1)
    assert llm.run([req(0)])[0] is not None
    srv.inject('500', echo_key=True, times=2); srv.inject('403')
    assert llm.run([req(1), req(2)]) == [None, None]
    kept = json.dumps(llm.ledger) + json.dumps(llm.metrics())
    assert 'made with the key [redacted]' in kept and 'The API key sk-[redacted] is not allowed' in kept
    assert key not in kept and key[:8] + '****' not in kept and key[-4:] + ' is' not in kept

def test_an_endpoint_that_answers_nothing_is_unavailable(tmp_path):
    "A closed port: one request uses its retries, then nothing more is sent and the status says so."
    import socket
    with socket.socket() as so: so.bind(('127.0.0.1', 0)); port = so.getsockname()[1]
    s = Settings(backend='openai', base_url=f'http://127.0.0.1:{port}/v1', cache_dir=str(tmp_path), max_retries=2,
                 max_concurrency=1, log_progress=False)
    async def no_sleep(_): pass
    with LLM(s, api_key='sk-test', sleep=no_sleep) as llm:
        assert llm.run([req(i) for i in range(4)]) == [None] * 4
        with pytest.raises(LLMError): llm.embed(['anything'])
        m = llm.metrics()
    assert llm.stopped == 'unavailable' and m['api_attempts'] == 3 and m['api_calls'] == 0
    assert m['llm_message'] == 'LLM unavailable after 3 attempts: answers are local (Connection error.)'

def test_one_failing_request_does_not_stop_a_working_endpoint(srv, tmp_path):
    llm = make_llm(srv, tmp_path, [], max_retries=1, max_concurrency=1)
    assert llm.run([req(0)])[0] is not None
    srv.inject('500', times=2)
    assert llm.run([req(1), req(2)])[0] is None and llm.stopped is None
    assert llm.metrics()['llm_message'].startswith('LLM: 1 request failed (error: failed after 2 attempts: HTTP 500: ')

def test_the_endpoint_is_in_the_cache_key(tmp_path):
    "Two servers offering the same model name never share answers."
    with LoopbackServer() as a, LoopbackServer(mode='paraphrase') as b:
        make_llm(a, tmp_path).run([req()])
        make_llm(b, tmp_path).run([req()])
        make_llm(a, tmp_path).run([req()])
        assert len(a.requests('/chat/completions')) == 1 and len(b.requests('/chat/completions')) == 1

def test_close_ends_the_event_loop(srv, tmp_path):
    import asyncio, gc, threading, time
    with make_llm(srv, tmp_path) as llm:
        llm.run([req()])
        thread = llm._loop.thread
        assert thread.is_alive()
    assert not thread.is_alive() and llm._loop.loop is None
    before = {t for t in threading.enumerate() if t.name == 'flexxray-llm-loop'}
    llm = make_llm(srv, tmp_path); llm.run([req(1)]); t = llm._loop.thread
    del llm                                                         # a client dropped without close() ends its loop too
    gc.collect()
    assert not t.is_alive() and {t for t in threading.enumerate() if t.name == 'flexxray-llm-loop'} <= before
    llm = make_llm(srv, tmp_path); pending = llm.submit(req(2)); loop = llm._loop
    del llm; gc.collect()                                           # dropped while its request runs: the loop ends after it
    assert isinstance(pending.result(), PassageScores)
    for _ in range(100):
        if loop.thread is None: break
        time.sleep(0.05)
    assert loop.closed and loop.thread is None
    with pytest.raises(RuntimeError, match='closed'): pending.loop.submit(asyncio.sleep(0))

def test_ctrl_c_cancels_requests_in_flight(tmp_path):
    "Interrupting a cell: the waiting thread gets KeyboardInterrupt at once, in-flight requests are cancelled and recorded."
    import os, signal, threading, time
    with LoopbackServer(latency=3.0) as slow:
        llm = make_llm(slow, tmp_path, timeout=10.0, max_cost_usd=1.0)
        def interrupt_when_sent():
            while len(slow.requests('/chat/completions')) < 3: time.sleep(0.01)
            t0.append(time.perf_counter()); os.kill(os.getpid(), signal.SIGINT)
        t0 = []
        threading.Thread(target=interrupt_when_sent, daemon=True).start()
        with pytest.raises(KeyboardInterrupt): llm.run([req(i) for i in range(3)])
        assert time.perf_counter() - t0[0] < 1.0                     # the server would answer 3 s after the sends
        assert [r['outcome'] for r in llm.ledger] == ['cancelled'] * 3 and llm.budget.held == 0 and not llm._inflight
        pending = llm.submit(req(4))                                  # the client still works (the server answers in 3 s)
        assert isinstance(pending.result(), PassageScores)
        llm.close()

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
    assert all(isinstance(o, PassageScores) for o in out) and not llm.api_batch_supported
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
