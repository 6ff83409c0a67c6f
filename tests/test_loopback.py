"The loopback OpenAI server, exercised through the real `openai` client as the toolkit uses it."
import asyncio, base64, json, pathlib, re, subprocess, sys, time
import openai, pydantic, pytest
from loopback import *
from loopback import LoopbackServer, ManualClock, cosine, jsonl_bytes
import fastcore.test as fct

LOOPBACK = pathlib.Path(__file__).with_name('loopback.py')

PASSAGES = {'P1': 'Customers loved the fast turnaround on pallet inspections.',
            'P2': 'The pricing was high compared with in-house X-ray machines.',
            'P3': 'Turnaround was usually two days, which helped customers ship recalled product faster.'}
QUESTION = 'How does a fast turnaround help customers?'
PROMPT = '\n'.join(f'[{k}] {v}' for k, v in PASSAGES.items()) + f'\n\nQuestion: {QUESTION}\nAnswer in JSON.'
MSGS = [{'role': 'system', 'content': 'Score each passage for the question from 0 to 10.'}, {'role': 'user', 'content': PROMPT}]

class Scored(pydantic.BaseModel):
    passage_id: str
    score: float = pydantic.Field(ge=0, le=10)
    reason: str
    quote: str

class Ranking(pydantic.BaseModel):
    passages: list[Scored]
    answer: str

@pytest.fixture
def srv():
    with LoopbackServer(clock=ManualClock()) as s: yield s

@pytest.fixture
def client(srv): return openai.OpenAI(base_url=srv.base_url, api_key='sk-test', max_retries=0)

def parse(client, **kw):
    return client.chat.completions.parse(model='gpt-4o-mini', messages=MSGS, response_format=Ranking, **kw)

# structured answers

def test_parse_structured_answer(client, srv):
    raw = client.chat.completions.with_raw_response.parse(model='gpt-4o-mini', messages=MSGS, response_format=Ranking)
    done = raw.parse()
    ranking = done.choices[0].message.parsed
    assert [p.passage_id for p in ranking.passages] == ['P1', 'P2', 'P3']
    scores = {p.passage_id: p.score for p in ranking.passages}
    assert scores['P1'] > scores['P3'] > scores['P2'] == 0
    assert all(p.quote == PASSAGES[p.passage_id] for p in ranking.passages)
    assert '[P1]' in ranking.answer and done.choices[0].finish_reason == 'stop'
    assert done.id.startswith('chatcmpl-') and done.object == 'chat.completion' and done.model == 'gpt-4o-mini'
    u = done.usage
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens and u.prompt_tokens_details.cached_tokens == 0
    sent = srv.requests('/chat/completions')[-1]['body']['response_format']
    assert sent['type'] == 'json_schema' and sent['json_schema']['strict'] and sent['json_schema']['name'] == 'Ranking'
    for k in ('x-request-id', 'x-ratelimit-limit-requests', 'x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests',
              'x-ratelimit-limit-tokens', 'x-ratelimit-remaining-tokens', 'x-ratelimit-reset-tokens'): assert k in raw.headers
    assert re.fullmatch(r'(\d+h)?(\d+m)?[\d.]+s|\d+ms', raw.headers['x-ratelimit-reset-tokens'])

def test_integer_ids_enums_and_bounds(client):
    class Pick(pydantic.BaseModel):
        passage_id: int
        relevance: int = pydantic.Field(ge=1, le=5)
        stance: str = pydantic.Field(json_schema_extra={'enum': ['supports', 'contradicts']})
        relevant: bool
    class Picks(pydantic.BaseModel):
        picks: list[Pick] = pydantic.Field(max_length=2)
        note: str | None
    picks = client.chat.completions.parse(model='gpt-4o-mini', messages=MSGS, response_format=Picks).choices[0].message.parsed
    assert [(p.passage_id, p.relevant) for p in picks.picks] == [(1, True), (3, True)]   # the best two, in prompt order
    assert all(1 <= p.relevance <= 5 and p.stance == 'supports' for p in picks.picks)

def test_json_object_text_and_bad_formats(client):
    r = client.chat.completions.create(model='gpt-4o-mini', messages=MSGS, response_format={'type': 'json_object'})
    obj = json.loads(r.choices[0].message.content)
    assert {p['passage_id'] for p in obj['passages']} == set(PASSAGES) and '[P' in obj['answer']
    text = client.chat.completions.create(model='gpt-4o-mini', messages=MSGS).choices[0].message.content
    assert text.startswith('The experts say:') and '[P1]' in text
    no_json = [{'role': 'user', 'content': '[P1] Fast.\nQuestion: speed?'}]
    with pytest.raises(openai.BadRequestError, match="the word 'json'"):
        client.chat.completions.create(model='gpt-4o-mini', messages=no_json, response_format={'type': 'json_object'})
    loose = {'type': 'json_schema', 'json_schema': {'name': 'Loose', 'strict': True, 'schema': Ranking.model_json_schema()}}
    with pytest.raises(openai.BadRequestError, match="'additionalProperties' is required"):
        client.chat.completions.create(model='gpt-4o-mini', messages=MSGS, response_format=loose)
    loose['json_schema']['strict'] = False   # not strict: accepted, and still filled
    assert 'passages' in json.loads(client.chat.completions.create(model='gpt-4o-mini', messages=MSGS, response_format=loose)
                                    .choices[0].message.content)

def test_schema_given_in_the_prompt(client):
    "Endpoints without structured outputs get the schema in a system message; the answer follows it."
    hint = {'role': 'system', 'content': 'Reply with one JSON object valid for this JSON schema: ' + json.dumps(Ranking.model_json_schema())}
    for fmt in ({'type': 'json_object'}, None):
        kw = {'response_format': fmt} if fmt else {}
        content = client.chat.completions.create(model='gpt-4o-mini', messages=[hint, *MSGS], **kw).choices[0].message.content
        assert Ranking.model_validate_json(content).passages[0].quote == PASSAGES['P1']

def test_concurrent_async_clients_and_latency():
    async def many(url):
        c = openai.AsyncOpenAI(base_url=url, api_key='sk-test', max_retries=0)
        rs = await asyncio.gather(*[c.chat.completions.parse(model='gpt-4o-mini', messages=MSGS, response_format=Ranking)
                                    for _ in range(12)])
        return [r.choices[0].message.parsed for r in rs]
    with LoopbackServer(latency=0.2) as s:
        t0 = time.perf_counter()
        parsed = asyncio.run(many(s.base_url))
        took = time.perf_counter() - t0
        ids = {e['request_id'] for e in s.journal}
    assert all(p == parsed[0] for p in parsed) and len(ids) == 12
    assert 0.2 <= took < 1.5          # served in parallel, each after 0.2 s

@pytest.mark.parametrize('mode', ['paraphrase', 'fabricate'])
def test_modes_break_verbatim_quotes(mode):
    with LoopbackServer(mode=mode) as s:
        c = openai.OpenAI(base_url=s.base_url, api_key='sk-test', max_retries=0)
        quotes = [p.quote for p in parse(c).choices[0].message.parsed.passages]
    assert all(q and q not in PASSAGES.values() for q in quotes)
    if mode == 'paraphrase': assert quotes[0] == 'Clients adored the quick turnaround on pallet inspections.'

def test_embeddings_similarity(client):
    texts = [QUESTION, PASSAGES['P1'], PASSAGES['P2']]
    floats = client.embeddings.create(model='text-embedding-3-small', input=texts, encoding_format='float')
    vecs = [d.embedding for d in floats.data]
    assert len(vecs[0]) == 256 and abs(cosine(vecs[0], vecs[0]) - 1) < 1e-9
    assert cosine(vecs[0], vecs[1]) > cosine(vecs[0], vecs[2])
    default = client.embeddings.create(model='text-embedding-3-small', input=texts)   # the client asks for base64
    assert all(abs(a - b) < 1e-6 for a, b in zip(default.data[1].embedding, vecs[1]))
    assert floats.usage.prompt_tokens > 0 and floats.object == 'list'
    assert len(client.embeddings.create(model='text-embedding-3-small', input='x', dimensions=64).data[0].embedding) == 64

# faults, as the client sees them

def test_status_faults(client, srv):
    srv.inject('500'); srv.inject(503, retry_after=2)
    with pytest.raises(openai.InternalServerError) as e: parse(client)
    assert e.value.status_code == 500
    with pytest.raises(openai.InternalServerError) as e: parse(client)
    assert e.value.status_code == 503 and e.value.response.headers['retry-after'] == '2'
    srv.inject('429', retry_after=300)
    with pytest.raises(openai.RateLimitError) as e: parse(client)
    assert e.value.response.headers['retry-after'] == '300' and e.value.code == 'rate_limit_exceeded'
    srv.inject('429', code='insufficient_quota')
    with pytest.raises(openai.RateLimitError) as e: parse(client)
    assert e.value.code == 'insufficient_quota'
    assert parse(client).choices[0].message.parsed   # faults are consumed

def test_sdk_retries_honour_retry_after(srv):
    retrying = openai.OpenAI(base_url=srv.base_url, api_key='sk-test', max_retries=2)
    srv.inject('429', retry_after=300)           # over 120 s: the SDK gives up at once
    with pytest.raises(openai.RateLimitError): parse(retrying)
    assert len(srv.requests('/chat/completions')) == 1
    srv.inject('429', retry_after_ms=30)          # short: retried after 30 ms, then answered
    assert parse(retrying).choices[0].message.parsed
    assert [e['retry_count'] for e in srv.requests('/chat/completions')[1:]] == [0, 1]
    assert [e['status'] for e in srv.requests('/chat/completions')[1:]] == [429, 200]

def test_transport_faults(client, srv):
    srv.inject('slow', delay=2.0)
    t0 = time.perf_counter()
    with pytest.raises(openai.APITimeoutError): parse(client, timeout=0.2)
    assert time.perf_counter() - t0 < 1.5
    srv.inject('drop')
    with pytest.raises(openai.APIConnectionError) as e: parse(client)
    assert not isinstance(e.value, openai.APITimeoutError)
    srv.inject('malformed')
    with pytest.raises(json.JSONDecodeError): parse(client)
    srv.inject('malformed', content_type='text/html')      # a proxy's page: the client hands back the text
    assert '502 Bad Gateway' in client.chat.completions.create(model='gpt-4o-mini', messages=MSGS)
    srv.inject('truncated')
    with pytest.raises(json.JSONDecodeError): parse(client)
    assert [e['fault'] for e in srv.requests('/chat/completions')] == ['slow', 'drop', 'malformed', 'malformed', 'truncated']
    assert srv.requests('/chat/completions')[1]['status'] is None          # dropped: nothing was sent

def test_content_faults(client, srv):
    srv.inject('length')
    with pytest.raises(openai.LengthFinishReasonError): parse(client)
    srv.inject('length')
    r = client.chat.completions.create(model='gpt-4o-mini', messages=MSGS, response_format={'type': 'json_object'})
    assert r.choices[0].finish_reason == 'length'
    with pytest.raises(ValueError): json.loads(r.choices[0].message.content)
    r = client.chat.completions.create(model='gpt-4o-mini', messages=MSGS, max_completion_tokens=5)   # naturally too long
    assert r.choices[0].finish_reason == 'length' and r.usage.completion_tokens <= 5
    srv.inject('refusal')
    msg = parse(client).choices[0].message
    assert msg.refusal and msg.content is None and msg.parsed is None
    srv.inject('invalid_json_content')
    with pytest.raises(pydantic.ValidationError): parse(client)

def test_fault_matching(client, srv):
    srv.inject('500', path='/embeddings')
    assert parse(client).choices[0].message.parsed                  # chat is not the target
    with pytest.raises(openai.InternalServerError): client.embeddings.create(model='text-embedding-3-small', input='x')
    srv.inject('503', times=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError): parse(client)
    assert len(srv.faults) == 0
    with pytest.raises(ValueError, match='unknown fault'): srv.inject('teapot')

def test_rate_limits_enforced():
    clock = ManualClock()
    with LoopbackServer(rpm=2, tpm=100_000, clock=clock) as s:
        c = openai.OpenAI(base_url=s.base_url, api_key='sk-test', max_retries=0)
        first = c.chat.completions.with_raw_response.create(model='gpt-4o-mini', messages=MSGS)
        assert first.headers['x-ratelimit-limit-requests'] == '2' and first.headers['x-ratelimit-remaining-requests'] == '1'
        c.chat.completions.create(model='gpt-4o-mini', messages=MSGS)
        with pytest.raises(openai.RateLimitError, match='requests per min') as e:
            c.chat.completions.create(model='gpt-4o-mini', messages=MSGS)
        assert e.value.response.headers['retry-after'] == '30' and e.value.response.headers['x-ratelimit-remaining-requests'] == '0'
        clock.advance(30)
        assert c.chat.completions.create(model='gpt-4o-mini', messages=MSGS).choices
        clock.advance(60)
        with pytest.raises(openai.RateLimitError, match='tokens per min'):
            c.chat.completions.create(model='gpt-4o-mini', messages=MSGS, max_completion_tokens=200_000)

def test_cached_tokens_on_repeated_prefix(client):
    transcript = 'Expert: we scanned every pallet for glass and metal before it shipped. ' * 80   # ~1,440 tokens
    def ask(q):
        msgs = [{'role': 'system', 'content': 'Quote the transcript.'}, {'role': 'user', 'content': transcript + f'\nQuestion: {q}'}]
        return client.chat.completions.create(model='gpt-4o-mini', messages=msgs).usage
    assert ask('What was scanned?').prompt_tokens_details.cached_tokens == 0
    u = ask('Which contaminants?')
    cached = u.prompt_tokens_details.cached_tokens
    assert 1024 <= cached <= u.prompt_tokens and cached % 128 == 0
    short = [{'role': 'user', 'content': 'Hello'}]
    client.chat.completions.create(model='gpt-4o-mini', messages=short)
    assert client.chat.completions.create(model='gpt-4o-mini', messages=short).usage.prompt_tokens_details.cached_tokens == 0

# batches

def batch_lines(n):
    return [{'custom_id': f'q{i}', 'method': 'POST', 'url': '/v1/chat/completions',
             'body': {'model': 'gpt-4o-mini', 'messages': MSGS, 'response_format': {'type': 'json_object'}}} for i in range(n)]

def submit(client, lines):
    f = client.files.create(file=('questions.jsonl', jsonl_bytes(lines)), purpose='batch')
    assert f.purpose == 'batch' and f.bytes == len(jsonl_bytes(lines)) and client.files.retrieve(f.id).filename == 'questions.jsonl'
    return client.batches.create(input_file_id=f.id, endpoint='/v1/chat/completions', completion_window='24h')

def read_jsonl(client, file_id): return [json.loads(l) for l in client.files.content(file_id).text.splitlines()]

def test_batch_flow(client, srv):
    srv.inject('500', custom_id='q5')                  # one line fails inside the batch
    b = submit(client, batch_lines(8))
    assert b.status == 'validating' and b.request_counts.total == 0
    seen = []
    for _ in range(4):
        srv.clock.advance(1)
        r = client.batches.retrieve(b.id)
        seen.append((r.status, r.request_counts.completed + r.request_counts.failed))
    assert seen == [('in_progress', 0), ('in_progress', 4), ('finalizing', 8), ('completed', 8)]
    assert (r.request_counts.total, r.request_counts.completed, r.request_counts.failed) == (8, 7, 1)
    assert r.completed_at == r.created_at + 4 and r.usage.input_tokens > 0
    out = read_jsonl(client, r.output_file_id)
    assert [o['custom_id'] for o in out] != sorted(o['custom_id'] for o in out)        # any order: join on custom_id
    assert sorted(o['custom_id'] for o in out) == [f'q{i}' for i in range(8) if i != 5]
    line = out[0]
    assert set(line) == {'id', 'custom_id', 'response', 'error'} and line['error'] is None
    assert line['response']['status_code'] == 200 and line['response']['request_id'].startswith('req_')
    completion = openai.types.chat.ChatCompletion.model_validate(line['response']['body'])
    assert json.loads(completion.choices[0].message.content)['passages'][0]['quote'] == PASSAGES['P1']
    errors = read_jsonl(client, r.error_file_id)
    assert [(e['custom_id'], e['response']['status_code']) for e in errors] == [('q5', 500)]
    assert client.files.retrieve(r.output_file_id).purpose == 'batch_output'

def test_batch_token_limit_exceeded(client, srv):
    srv.inject('token_limit_exceeded')
    b = submit(client, batch_lines(2))                 # accepted...
    assert b.status == 'validating'
    srv.clock.advance(1)
    r = client.batches.retrieve(b.id)                   # ...then failed
    assert r.status == 'failed' and r.failed_at and r.output_file_id is None
    assert r.errors.data[0].code == 'token_limit_exceeded'

def test_batch_expired_partial(client, srv):
    srv.inject('expired_partial', done=0.5)
    b = submit(client, batch_lines(6))
    srv.clock.advance(10)
    r = client.batches.retrieve(b.id)
    assert r.status == 'expired' and r.expired_at
    done, rest = read_jsonl(client, r.output_file_id), read_jsonl(client, r.error_file_id)
    assert sorted(o['custom_id'] for o in done) == ['q0', 'q1', 'q2']
    assert sorted(e['custom_id'] for e in rest) == ['q3', 'q4', 'q5']
    assert all(e['response'] is None and e['error']['code'] == 'batch_expired' for e in rest)
    assert (r.request_counts.completed, r.request_counts.failed) == (3, 3)

def test_batch_invalid_lines_and_cancel(client, srv):
    lines = batch_lines(3)
    lines[1]['url'] = '/v1/embeddings'
    bad = submit(client, lines)
    srv.clock.advance(1)
    r = client.batches.retrieve(bad.id)
    assert r.status == 'failed' and [(e.code, e.line) for e in r.errors.data] == [('invalid_url', 2)]
    b = submit(client, batch_lines(4))
    srv.clock.advance(2)                                # half-way through in_progress
    assert client.batches.cancel(b.id).status == 'cancelling'
    srv.clock.advance(1)
    r = client.batches.retrieve(b.id)
    assert r.status == 'cancelled' and len(read_jsonl(client, r.output_file_id)) == 2
    with pytest.raises(openai.BadRequestError): client.batches.cancel(b.id)
    with pytest.raises(openai.NotFoundError): client.batches.retrieve('batch_nope')
    with pytest.raises(openai.NotFoundError): client.files.retrieve('file-nope')

def test_models_and_unknown_urls(client):
    assert 'gpt-4o-mini' in [m.id for m in client.models.list().data]
    with pytest.raises(openai.NotFoundError, match='Invalid URL'): client.get('/nowhere', cast_to=object)

# journal and credentials

def test_journal_never_holds_the_key(capfd):
    planted = 'sk-PLANTED-' + 'x9' * 20
    with LoopbackServer(verbose=True) as s:
        c = openai.OpenAI(base_url=s.base_url, api_key=planted, max_retries=0)
        parse(c)
        c.files.create(file=('a.jsonl', b'{}\n'), purpose='batch')
        s.inject('500')
        with pytest.raises(openai.InternalServerError): parse(c)
        journal = s.journal
    entry = journal[0]
    assert (entry['method'], entry['path'], entry['status'], entry['auth']) == ('POST', '/v1/chat/completions', 200, True)
    assert entry['body']['model'] == 'gpt-4o-mini' and entry['headers']['x-stainless-retry-count'] == '0'
    assert entry['retry_count'] == 0 and 'authorization' not in entry['headers']
    assert journal[1]['body'] == {'purpose': 'batch', 'file': {'filename': 'a.jsonl', 'bytes': 3}}
    assert (journal[2]['status'], journal[2]['fault']) == (500, '500')
    out, err = capfd.readouterr()
    assert 'POST /v1/chat/completions 200' in err
    for text in (json.dumps(journal, default=str), out, err): assert planted not in text and 'x9x9' not in text

def test_command_line_server():
    proc = subprocess.Popen([sys.executable, str(LOOPBACK), '--port', '0'], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r'http://127\.0\.0\.1:\d+/v1', proc.stdout.readline()).group(0)
        c = openai.OpenAI(base_url=url, api_key='sk-PLANTED-cli', max_retries=0)
        assert c.chat.completions.create(model='gpt-4o-mini', messages=MSGS).choices[0].message.content
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert 'POST /v1/chat/completions 200' in err and 'sk-PLANTED' not in err


def test_examples():
    "The building blocks, one example each: tokens, prompt cache, embeddings, prompts, quotes, schemas, limits, faults."

    fct.test_eq(count_tokens(''), 0)
    fct.test_eq(count_tokens('x' * 9), 3)
    fct.test_eq(prompt_text([{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': [{'type': 'text', 'text': 'Hi'}]}]),
            '<system>Be brief.\n<user>Hi\n')

    fct.test_eq(shared_prefix_len('transcript A', 'transcript B'), 11)
    cache, transcript = PromptCache(), 'Expert: we scanned every pallet. ' * 200
    fct.test_eq(cache.lookup('gpt-4o-mini', transcript + 'Question: speed?'), 0)        # first sight: nothing cached
    fct.test_eq(cache.lookup('gpt-4o-mini', transcript + 'Question: price?'), 1536)     # 6,610 shared chars = 1,652 tokens
    fct.test_eq(cache.lookup('gpt-4.1', transcript + 'Question: price?'), 0)            # caches are per model
    fct.test_eq(cache.lookup('gpt-4o-mini', 'Question: price?' + transcript), 0)        # question first: no shared prefix

    q = hashed_embedding('How fast is the turnaround for customers?')
    near, far = hashed_embedding('Customers loved the fast turnaround.'), hashed_embedding('Glass and metal contaminants in jars.')
    assert cosine(q, near) > cosine(q, far)
    fct.test_close(cosine(q, q), 1.0)
    fct.test_eq(hashed_embedding('same words'), hashed_embedding('same words'))
    fct.test_eq(len(base64.b64decode(encode_embedding(q, 'base64'))), 4 * EMBED_DIMS)

    msgs = [{'role': 'system', 'content': 'Rate passages. Example: [P9] not a real passage'},
            {'role': 'user', 'content': 'Passages:\n[P1] Our customers loved the fast turnaround.\n[P2] Pricing was high.\n\n'
                                        'Question: How fast is the turnaround for customers?'}]
    p = parse_prompt(msgs)
    fct.test_eq(p.question, 'How fast is the turnaround for customers?')
    fct.test_eq(list(p.passages), ['P1', 'P2'])
    fct.test_eq(overlap_score(p.question, p.passages['P1']), 10.0)
    fct.test_eq(overlap_score(p.question, p.passages['P2']), 0.0)
    fct.test_eq(spoken_text('Mark Delgado (asked: "How fast? Really: fast?"): We started within a day.'), 'We started within a day.')
    fct.test_eq(spoken_text('Expert 2: Yes.'), 'Yes.')
    fct.test_eq(spoken_text('Our customers loved it.'), 'Our customers loved it.')

    fct.test_eq(paraphrase('Our customers loved the fast turnaround.'), 'Our clients adored the quick turnaround.')
    fct.test_eq(paraphrase('Glass was the usual contaminant in jars.'), 'Glass was usual the contaminant in jars.')
    fct.test_eq(paraphrase('Yes.'), 'Yes, more or less.')
    assert fabricate('P1') in INVENTED and fabricate('P1') == fabricate('P1')

    class Scored(pydantic.BaseModel):
        passage_id: str
        score: float = pydantic.Field(ge=0, le=10)
        reason: str

    class Ranking(pydantic.BaseModel):
        passages: list[Scored]
        answer: str
        confident: bool

    ranking = Ranking.model_validate(Responder(msgs).fill(Ranking.model_json_schema()))
    fct.test_eq([(s.passage_id, s.score) for s in ranking.passages], [('P1', 10.0), ('P2', 0.0)])
    fct.test_eq(ranking.passages[0].reason, 'Mentions customer, fast, turnaround.')
    fct.test_eq(ranking.answer, 'The experts say: Our customers loved the fast turnaround. [P1]')

    class KeyQuote(pydantic.BaseModel):
        passage_id: int
        quote: str
        stance: str

    class Refined(pydantic.BaseModel):
        answer: str
        ranking: list[str] = pydantic.Field(description='passage ids, most useful first')
        key_quotes: list[KeyQuote] = pydantic.Field(max_length=3)
        note: str | None = None

    labelled = [{'role': 'user', 'content': '[P1] Ann Lee (asked: "Price?"): It cost a lot.\n[P2] Bo Chan: Turnaround was fast, '
                                            'two days.\n[P3] Bo Chan: Fast turnaround won us the account.\nQuestion: Was turnaround fast?'}]
    fct.test_eq(Responder(labelled).fill(Refined.model_json_schema()),
            {'answer': 'The experts say: Turnaround was fast, two days. [P2] [P3]', 'ranking': ['P2', 'P3'],
             'key_quotes': [{'passage_id': 2, 'quote': 'Turnaround was fast, two days.', 'stance': 'supports'},
                            {'passage_id': 3, 'quote': 'Fast turnaround won us the account.', 'stance': 'supports'}],
             'note': 'loopback note'})
    fct.test_eq(Responder(labelled, 'paraphrase').quote('P3'), 'Quick turnaround us won the account.')
    hinted = [{'role': 'system', 'content': 'Reply with JSON valid for this JSON schema: ' + json.dumps(Refined.model_json_schema())}, *labelled]
    fct.test_eq(json.loads(Responder(hinted).reply({'type': 'json_object'}))['ranking'], ['P2', 'P3'])

    fct.test_eq([fmt_duration(s) for s in (0.12, 1, 8.64, 360, 3723)], ['120ms', '1s', '8.64s', '6m0s', '1h2m3s'])
    clock = ManualClock()
    limits = RateLimits(rpm=3, clock=clock)
    fct.test_eq([limits.admit(100) for _ in range(3)], [None] * 3)
    fct.test_eq(limits.admit(100), ('requests', 20.0))        # 3 a minute: one more every 20 s
    fct.test_eq(limits.headers()['x-ratelimit-remaining-requests'], '0')
    fct.test_eq(limits.headers()['x-ratelimit-reset-requests'], '1m0s')
    clock.advance(20)
    fct.test_eq(limits.admit(100), None)
    fct.test_eq(RateLimits(tpm=1000, clock=clock).admit(1500), ('tokens', 30.0))

    fq = FaultQueue().append(429, retry_after=300).append('length', custom_id='q2').append('expired_partial')
    fct.test_eq(fq.take('GET', '/v1/models'), None)
    fct.test_eq(fq.take('POST', '/v1/chat/completions').opts, {'retry_after': 300})
    fct.test_eq(fq.take('POST', '/v1/chat/completions'), None)                      # the `length` fault waits for line q2
    fct.test_eq(fq.take('POST', '/v1/chat/completions', custom_id='q2').kind, 'length')
    fct.test_eq(fq.take('POST', '/v1/batches').kind, 'expired_partial')
    fct.test_fail(lambda: fq.append('teapot'), contains='unknown fault')

    strict = {'type': 'object', 'properties': {'answer': {'type': 'string'}, 'cites': {'type': 'array', 'items': {'$ref': '#/$defs/C'}}},
              'required': ['answer', 'cites'], 'additionalProperties': False,
              '$defs': {'C': {'type': 'object', 'properties': {'id': {'type': 'string'}}, 'required': [], 'additionalProperties': False}}}
    fct.test_fail(lambda: check_strict(strict, 'Answer'), contains="In context=('$defs', 'C'), 'required' is required")
    strict['$defs']['C']['required'] = ['id']
    check_strict(strict, 'Answer')
    fct.test_fail(lambda: check_response_format({'type': 'json_object'}, 'Rate the passages.'), contains="the word 'json'")
    form = b'--XyZ\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--XyZ\r\nContent-Disposition: form-data; ' \
           b'name="file"; filename="in.jsonl"\r\nContent-Type: application/octet-stream\r\n\r\n{"a": 1}\r\n\r\n--XyZ--\r\n'
    fct.test_eq(parse_multipart(form, 'multipart/form-data; boundary=XyZ'), {'purpose': (None, b'batch'), 'file': ('in.jsonl', b'{"a": 1}\r\n')})

    srv = LoopbackServer(clock=ManualClock()).start()
    client = openai.OpenAI(base_url=srv.base_url, api_key='sk-loopback-demo', max_retries=0)
    raw = client.chat.completions.with_raw_response.parse(model='gpt-4o-mini', messages=msgs, response_format=Ranking)
    done = raw.parse()
    fct.test_eq(done.choices[0].message.parsed, ranking)
    fct.test_eq(raw.headers['x-ratelimit-limit-requests'], str(DEFAULT_RPM))
    assert raw.headers['x-request-id'].startswith('req_')
    fct.test_eq(done.usage.prompt_tokens, count_tokens(prompt_text(msgs)))
    fct.test_eq(srv.requests('/chat/completions')[0]['body']['response_format']['json_schema']['name'], 'Ranking')
    assert 'sk-loopback-demo' not in json.dumps(srv.journal) and srv.journal[0]['auth']

    srv.inject('429', retry_after=300)
    fct.test_fail(lambda: client.chat.completions.create(model='gpt-4o-mini', messages=msgs), contains='Rate limit reached')

    json_msgs = [msgs[0], {**msgs[1], 'content': msgs[1]['content'] + '\nAnswer in JSON.'}]
    lines = [{'custom_id': f'q{i}', 'method': 'POST', 'url': '/v1/chat/completions',
              'body': {'model': 'gpt-4o-mini', 'messages': json_msgs, 'response_format': {'type': 'json_object'}}} for i in range(3)]
    upload = client.files.create(file=('in.jsonl', jsonl_bytes(lines)), purpose='batch')
    batch = client.batches.create(input_file_id=upload.id, endpoint='/v1/chat/completions', completion_window='24h')
    fct.test_eq(batch.status, 'validating')
    statuses = []
    for _ in range(4):
        srv.clock.advance(1)
        statuses.append(client.batches.retrieve(batch.id).status)
    fct.test_eq(statuses, ['in_progress', 'in_progress', 'finalizing', 'completed'])
    out = [json.loads(l) for l in client.files.content(client.batches.retrieve(batch.id).output_file_id).text.splitlines()]
    fct.test_eq(sorted(o['custom_id'] for o in out), ['q0', 'q1', 'q2'])
    fct.test_eq(json.loads(out[0]['response']['body']['choices'][0]['message']['content'])['passages'][0]['score'], 10.0)
    srv.stop()
