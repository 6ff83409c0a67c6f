"""The LLM layer under rate limits, against the loopback OpenAI-compatible server (300 ms a call, an RPM cap).

The server runs in its own process (`python tests/loopback.py`), as a real endpoint would, so its work does not
compete with the client for the interpreter.

    .venv/bin/python benchmarks/bench_llm.py [--n 100] [--rpm 500] [--tpm 10000000] [--latency 0.3] [--seq-sample 20] [--words 9000]

Runs the FlexXray analysis with the openai backend on N synthetic calls (benchmarks/make_corpus.py) and prints:
wall time ÷ the rate-limit floor (calls ÷ RPM); the speed-up over the seed's way (sequential calls with a 1.5 s pause
after each: timed on the first --seq-sample requests of the same run and scaled to all of them); tokens and dollars
per transcript at the default models' prices, in sync and in batch mode; and the API calls of a second run (cache).
Then the accounting (`--accounting-only` runs just this, in seconds): requests against an in-process server that
injects billed faults (`length` replies, refusals, invalid output re-asked) and unbilled ones (500s, 429s), printing
the sends the server saw against the client's `api_attempts`, the replies it billed against the client's ledger, and
what ten concurrent requests spend under a $0.0002 budget.
"""
import argparse, contextlib, os, pathlib, socket, subprocess, sys, tempfile, time, urllib.request
sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / 'tests'))
LOOPBACK = pathlib.Path(__file__).parent.parent / 'tests' / 'loopback.py'
from make_corpus import make_corpus
from loopback import LoopbackServer, ManualClock
from flexxray_nb.companies import company_settings
from flexxray_nb.batch import run_company
from flexxray_nb.core import Settings
from flexxray_nb.llm import LLM, LLMRequest, call_cost

@contextlib.contextmanager
def server_process(latency, rpm, tpm):
    "The loopback server in a child process; yields its base URL."
    with socket.socket() as so: so.bind(('127.0.0.1', 0)); port = so.getsockname()[1]
    p = subprocess.Popen([sys.executable, str(LOOPBACK), '--port', str(port), '--latency', str(latency),
                          '--rpm', str(rpm), '--tpm', str(tpm), '--quiet'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f'http://127.0.0.1:{port}/v1'
    try:
        for _ in range(100):
            try: urllib.request.urlopen(url + '/models', timeout=1); break
            except OSError: time.sleep(0.1)
        yield url
    finally: p.terminate(); p.wait()

def run(url, folder, cache, out, **kw):
    s = company_settings('FlexXray', backend='openai', base_url=url, cache_dir=str(cache), log_progress=False, **kw)
    t0 = time.perf_counter()
    r = run_company('FlexXray', folder, out, s)
    return r, time.perf_counter() - t0

def seed_baseline(url, requests, delay=1.5):
    "The seed system's way: one call at a time, a fixed pause after each."
    import openai
    client = openai.OpenAI(base_url=url, api_key='sk-bench', max_retries=0)
    t0 = time.perf_counter()
    for r in requests:
        client.chat.completions.create(model=r['model'], messages=r['messages'], max_tokens=r.get('max_tokens', 500))
        time.sleep(delay)
    return time.perf_counter() - t0

class MeteredServer(LoopbackServer):
    "The loopback server, keeping the usage of every reply it answers with 200 (what a real API would bill)."
    def __init__(self, **kw): super().__init__(**kw); self.billed = []
    def complete(self, body, fault=None, limited=True):
        reply = super().complete(body, fault, limited)
        if reply.status == 200: self.billed.append((body['model'], reply.body['usage']))
        return reply

def accounting_request(i):
    "A request to score 13 passages (a schema, so that output can be refused or invalid)."
    from flexxray_nb.hybrid import PassageScores
    text = f'Question: how fast is the turnaround? ({i})\n' + '\n'.join(
        f'[P{k}] The turnaround was fast and the pricing was fair for line {k}.' for k in range(13))
    return LLMRequest('gpt-4o-mini', [{'role': 'user', 'content': text}], PassageScores, max_tokens=400, stage='score')

def accounting(cache):
    "Sends and bills the server saw against the client's ledger (sent one at a time: the same figures each run); a budget."
    async def no_wait(_): pass
    faults = [('length', 3), ('refusal', 2), ('invalid_json_content', 2), ('500', 4), ('429', 2)]
    with MeteredServer() as srv:
        for kind, n in faults: srv.inject(kind, times=n)
        s = Settings(backend='openai', base_url=srv.base_url, cache_dir=str(cache / 'faults'), log_progress=False, max_concurrency=1)
        with LLM(s, api_key='sk-bench', sleep=no_wait) as llm:
            out = llm.run([accounting_request(i) for i in range(20)])
            m = llm.metrics()
        server_cost = sum(call_cost(model, u, s.prices) for model, u in srv.billed)
        print(f'faults: {", ".join(f"{n} {k}" for k, n in faults)} over 20 requests ({sum(o is not None for o in out)} answered usably)')
        print(f'sends: server saw {len(srv.requests("/chat/completions"))}, client api_attempts {m["api_attempts"]}; '
              f'api_calls (requests answered) {m["api_calls"]}')
        print(f'billed replies: server {len(srv.billed)} for ${server_cost:.6f}; client ledger ${m["cost_usd"]:.6f} '
              f'({sum(r["cost_usd"] > 0 for r in llm.ledger)} rows with a cost)')
    with MeteredServer() as srv:
        s = Settings(backend='openai', base_url=srv.base_url, cache_dir=str(cache / 'budget'), log_progress=False, max_cost_usd=0.0002)
        with LLM(s, api_key='sk-bench') as llm:
            reqs = [LLMRequest('gpt-4o-mini', [{'role': 'user', 'content': f'Question: request {i}\n' + 'The turnaround was fast. ' * 160}],
                               max_tokens=50, stage='score') for i in range(10)]
            out = llm.run(reqs)
            print(f'budget $0.0002, 10 concurrent requests of ~$0.00015: {len(srv.requests("/chat/completions"))} sent, '
                  f'{sum(o is not None for o in out)} answered, ${llm.spent:.6f} spent; {llm.metrics()["llm_message"]}')

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=100); ap.add_argument('--rpm', type=int, default=500)
    ap.add_argument('--tpm', type=int, default=10_000_000, help='tokens per minute (the floor is set by RPM alone)')
    ap.add_argument('--latency', type=float, default=0.3); ap.add_argument('--seq-sample', type=int, default=20)
    ap.add_argument('--words', type=int, default=9000, help='words per synthetic call (one-hour calls are ~9k)')
    ap.add_argument('--accounting-only', action='store_true', help='only the attempts-against-bills and budget figures')
    a = ap.parse_args()
    os.environ['OPENAI_API_KEY'] = 'sk-bench'
    os.environ['TQDM_DISABLE'] = '1'
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        if a.accounting_only: return accounting(d)
        make_corpus(a.n, d / 'calls', words=a.words)
        with server_process(a.latency, a.rpm, a.tpm) as url:
            r, wall = run(url, d / 'calls', d / 'cache', d / 'out', requests_per_minute=a.rpm, tokens_per_minute=a.tpm)
            m = r.results['metrics']
            calls = m['api_calls']
            floor = calls / a.rpm * 60
            rejected_429 = m['api_attempts'] - calls
            chats = [dict(model='gpt-4o-mini', messages=[{'role': 'user', 'content': f'Question: sample {i}'}], max_tokens=200)
                     for i in range(a.seq_sample)]
            seq_per_call = seed_baseline(url, chats) / len(chats)
            seq = seq_per_call * calls
            r2, wall2 = run(url, d / 'calls', d / 'cache', d / 'out', requests_per_minute=a.rpm, tokens_per_minute=a.tpm)
        print(f'{a.n} transcripts, {calls} API calls ({m["api_attempts"]} attempts, {rejected_429} retried), '
              f'{a.latency * 1000:.0f} ms latency, {a.rpm} RPM')
        print(f'wall {wall:.1f} s; rate-limit floor (calls / RPM) {floor:.1f} s; wall / floor = {wall / floor:.2f}')
        print(f'seed-style sequential with 1.5 s pauses: {seq_per_call:.2f} s a call (timed on {len(chats)} calls) x {calls} = '
              f'{seq:.0f} s; speed-up {seq / wall:.0f}x')
        print(f'tokens per transcript: {(m["prompt_tokens"] + m["completion_tokens"]) / a.n:,.0f}; '
              f'cost per transcript (sync): ${m["cost_usd"] / a.n:.5f} (total ${m["cost_usd"]:.4f})')
        print(f'second run: {r2.results["metrics"]["api_calls"]} API calls, {r2.results["metrics"]["cache_hits"]} cache hits, {wall2:.1f} s')
        clock = ManualClock()
        with LoopbackServer(clock=clock) as srv:
            async def advance(s): clock.advance(s)
            s = company_settings('FlexXray', backend='openai', base_url=srv.base_url, cache_dir=str(d / 'cache-batch'),
                                 log_progress=False, mode='batch')
            llm = LLM(s, sleep=advance)
            rb = run_company('FlexXray', d / 'calls', d / 'out-batch', s, llm=llm)
        mb = rb.results['metrics']
        print(f'batch mode: {mb["api_calls"]} requests in {len(srv.requests("/batches", "POST"))} batches; '
              f'cost per transcript ${mb["cost_usd"] / a.n:.5f} (total ${mb["cost_usd"]:.4f})')
        accounting(d)

if __name__ == '__main__':
    main()
