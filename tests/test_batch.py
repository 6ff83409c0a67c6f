"""The run engine: a run killed at random moments and restarted ends with the results of an uninterrupted run and
never redoes a finished call; failures are retried, never the same failure twice; a worker killed mid-run costs
nothing; two runs writing the same folder at once both finish; the batch processing guide's examples run as written
from the guide itself. The Dask cluster tests are in test_dask.py."""
import collections, json, os, pathlib, random, re, shutil, signal, subprocess, sys, threading, time
import pandas as pd
import psutil
import pytest
from conftest import ROOT, SAMPLES, SHARED
sys.path.insert(0, str(ROOT / 'benchmarks'))
from make_corpus import make_corpus
import flexxray_nb.batch as batch
from flexxray_nb.batch import (BatchManager, StreamlinedQuoteAnalysis, adjust_batch_size, check_resources, run_company,
                               update_metrics)
from loopback import LoopbackServer
from flexxray_nb.parse import read_transcript
from flexxray_nb.roles import assign_roles
from flexxray_nb.core import ENV_NAMES, Settings

SAME = ('questions', 'transcripts', 'grid', 'stances')  # what two runs on the same files must agree on

def test_corpus_is_deterministic_and_reads_as_calls(tmp_path):
    "make_corpus: the same calls for a seed (a smaller corpus is a prefix of a larger one), each read with one expert."
    a = make_corpus(24, tmp_path / 'a', seed=5)
    subprocess.run([sys.executable, ROOT / 'benchmarks' / 'make_corpus.py', '12', '--out', tmp_path / 'b', '--seed', '5'],
                   check=True, capture_output=True, env={**os.environ, 'PYTHONHASHSEED': '11'})  # another process
    assert [p.read_bytes() for p in a[:12]] == [p.read_bytes() for p in sorted((tmp_path / 'b').iterdir())]
    assert {p.suffix for p in a} == {'.txt', '.md', '.vtt'}
    for p in a:
        tr = assign_roles(read_transcript(p))
        experts = [s for s in tr.speakers if s.role == 'expert']
        assert tr.ok and len(experts) == 1 and 8500 <= len(tr.text.split()) <= 11000, (p.name, tr.error, tr.speakers)
        assert tr.metadata['expert_name'] and tr.metadata['network'] and tr.metadata['call_date']

def local_settings(cache, **kw) -> Settings:
    return Settings(cache_dir=str(cache), log_progress=False, backend='local', **kw)

def results_json(out) -> dict:
    return json.loads((pathlib.Path(out) / 'FlexXray' / 'results.json').read_text(encoding='utf-8'))

# The run a user starts and a crash kills: a separate Python process running `run_company`. It appends one line to
# `worklog` per transcript whose digest it computed (the real `digest`, wrapped to count), so the test can count the
# work done, including the work of runs that were killed before they could report anything.
RUN = '''
import os, sys
import flexxray_nb.batch as batch
from flexxray_nb.core import Settings
folder, out, cache, worklog, run = sys.argv[1:6]
real_digest = batch.digest
def counted_digest(tr, *args, **kw):
    d = real_digest(tr, *args, **kw)
    with open(worklog, 'a', encoding='utf-8') as f: f.write(f'{run}\\t{tr.file}\\n'); f.flush(); os.fsync(f.fileno())
    return d
batch.digest = counted_digest
batch.run_company('FlexXray', folder, out, Settings(cache_dir=cache, log_progress=False, backend='local'), executor='local')
'''

def start_run(folder, out, cache, worklog, run: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-c', RUN, str(folder), str(out), str(cache), str(worklog), str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, 'TQDM_DISABLE': '1'})

def checkpoints(cache) -> dict:
    "Each checkpoint file's inode: a checkpoint that is written again gets a new one (`os.replace`)."
    d = pathlib.Path(cache) / 'checkpoints'
    return {p.name: p.stat().st_ino for p in d.glob('*.json')} if d.is_dir() else {}

def test_killed_and_restarted_run_matches_uninterrupted_run(tmp_path):
    folder = tmp_path / 'calls'
    make_corpus(200, folder, seed=3, words=1500)
    ref = start_run(folder, tmp_path / 'ref_out', tmp_path / 'ref_cache', tmp_path / 'ref_work.log', 0)
    rng, snapshots = random.Random(20260501), []
    cache, work = tmp_path / 'cache', tmp_path / 'work.log'
    for run in range(1, 5):  # four runs, each killed at a random point of its progress
        before = len(checkpoints(cache))
        target = before + rng.randint(1, (200 - before) // 3)  # leaves work for the runs after it
        p = start_run(folder, tmp_path / 'out', cache, work, run)
        while p.poll() is None and len(checkpoints(cache)) < target: time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.03))  # somewhere inside the next file
        assert p.poll() is None, p.stderr.read()[-3000:]
        os.killpg(p.pid, signal.SIGKILL); p.wait()
        snapshots.append(checkpoints(cache))
        assert before < len(snapshots[-1]) < 200
    kills, run = len(snapshots), 5
    p = start_run(folder, tmp_path / 'out', cache, work, run)
    assert p.wait(timeout=120) == 0, p.stderr.read()[-3000:]
    assert ref.wait(timeout=120) == 0, ref.stderr.read()[-3000:]

    got, want = results_json(tmp_path / 'out'), results_json(tmp_path / 'ref_out')
    for k in SAME: assert got[k] == want[k], k
    assert len(got['transcripts']) == 200 and all(t['status'] == 'ok' for t in got['transcripts'])

    # No finished transcript was processed twice: every checkpoint that existed when a run was killed is the same
    # file at the end, and the final run resumed exactly those and processed only the rest.
    final = checkpoints(cache)
    assert len(final) == 200
    for snap in snapshots: assert {k: final[k] for k in snap} == snap
    perf = got['metrics']['performance']
    assert (perf['resumed'], perf['processed']) == (len(snapshots[-1]), 200 - len(snapshots[-1]))
    # Counting the work itself: 200 digests, plus at most one per kill (the file in flight when it landed).
    done = [l.split('\t') for l in work.read_text(encoding='utf-8').splitlines()]
    per_file = pd.Series([f for _, f in done]).value_counts()
    assert len(per_file) == 200 and 200 <= len(done) <= 200 + kills, (len(per_file), len(done))
    assert sum(int(r) == run for r, _ in done) == perf['processed']
    log = (tmp_path / 'out' / 'FlexXray' / 'run.log').read_text(encoding='utf-8')
    assert log.count(' done: ') == 1 and log.count(' run FlexXray: ') == run

def three_samples(dest) -> pathlib.Path:
    dest.mkdir()
    for p in sorted(SAMPLES.glob('*.txt'))[:3]: shutil.copy(p, dest)
    return dest

def test_failures_are_retried_but_never_the_same_failure_twice(tmp_path, monkeypatch):
    "Four calls: one fine, one failing the same way each time, one failing once, one failing differently each time."
    folder = tmp_path / 'calls'; folder.mkdir()
    for p in sorted(SAMPLES.glob('*.txt'))[:4]: shutil.copy(p, folder)
    fine, same, once, varies = [str(p) for p in sorted(folder.iterdir())]
    tries, real = collections.Counter(), batch.digest
    def flaky(tr, *args, **kw):
        if tr.ok:  # the digests of failures the engine records are not the work under test
            tries[tr.file] += 1
            if tr.file == same: raise MemoryError('out of memory reading this call')
            if tr.file == once and tries[once] == 1: raise TimeoutError('the disk was slow')
            if tr.file == varies: raise RuntimeError(f'attempt {tries[varies]}\nand a second line')
        return real(tr, *args, **kw)
    monkeypatch.setattr(batch, 'digest', flaky)
    r = run_company('FlexXray', folder, tmp_path / 'out', local_settings(tmp_path / 'cache', max_retries=3), executor='local')
    perf = r.performance_metrics
    assert (perf['retried'], perf['error_count'], perf['processed'], perf['success_rate']) == (1 + 1 + 3, 2, 4, 50.0)
    assert tries == {fine: 1, same: 2, once: 2, varies: 4}
    assert r.errors_df().to_dict('records') == [
        dict(file=same, error='failed after 2 attempts: MemoryError: out of memory reading this call'),
        dict(file=varies, error='failed after 4 attempts: RuntimeError: attempt 4')]
    res = results_json(tmp_path / 'out')
    assert [t['status'] for t in res['transcripts']] == ['ok', 'error', 'ok', 'error']
    report = json.loads((tmp_path / 'out' / 'FlexXray' / 'batch_report.json').read_text())
    assert report['summary']['success_rate'] == '50.0%'
    assert [g['file'] for g in res['grid']] == [fine, once] and any(q['quotes'] for q in res['questions'])
    log = (tmp_path / 'out' / 'FlexXray' / 'run.log').read_text()
    assert 'failed after 2 attempts: MemoryError' in log and 'failed after 4 attempts' in log
    again = run_company('FlexXray', folder, tmp_path / 'out', local_settings(tmp_path / 'cache', max_retries=3), executor='local')
    assert (again.performance_metrics['resumed'], tries[fine]) == (2, 1)  # failures are not checkpointed: tried again

def test_worker_killed_mid_run_costs_nothing(tmp_path):
    "The default executor on 2+ cores is a process pool; SIGKILL one of its workers mid-run: the run still finishes whole."
    if batch.cores() < 2: pytest.skip('one core: the default executor is this process')
    folder = tmp_path / 'calls'
    make_corpus(40, folder, seed=4, words=3000)
    killed = []
    def kill_a_worker(info):
        if info['batch'] == 1:
            me = os.getpid()  # the pool's workers are the fork server's children, not this process's
            workers = [c for c in psutil.Process().children(recursive=True) if c.ppid() != me]
            os.kill(max(workers, key=lambda c: c.cpu_times().user).pid, signal.SIGKILL); killed.append(info['done'])
    r = run_company('FlexXray', folder, tmp_path / 'out', local_settings(tmp_path / 'cache'), on_batch=kill_a_worker,
                    batch_size=8)
    perf = r.performance_metrics
    assert killed and (perf['executor'], perf['workers']) == ('process', batch.cores())
    assert perf['retried'] >= 1 and perf['error_count'] == 0 and perf['processed'] == 40
    ref = run_company('FlexXray', folder, tmp_path / 'ref', local_settings(tmp_path / 'ref_cache'), executor='local')
    got = results_json(tmp_path / 'out')
    for k in SAME: assert got[k] == ref.results[k], k
    assert 'worker lost' not in (tmp_path / 'out' / 'FlexXray' / 'run.log').read_text()  # none given up

def test_file_vanishing_mid_run_is_recorded(tmp_path):
    folder = three_samples(tmp_path / 'calls')
    last = sorted(folder.iterdir())[-1]
    r = BatchManager(out_dir=tmp_path / 'out').process_transcripts_batch(
        folder, StreamlinedQuoteAnalysis('FlexXray', local_settings(tmp_path / 'cache')), batch_size=1,
        on_batch=lambda b: last.unlink() if b['batch'] == 1 else None)
    assert r.errors_df().to_dict('records') == [dict(file=str(last), error='cannot read file: No such file or directory')]
    res = results_json(tmp_path / 'out')
    assert [t['status'] for t in res['transcripts']] == ['ok', 'ok', 'error']

def test_two_runs_writing_one_folder_at_once(tmp_path):
    "Like two companies whose names differ only in case on a case-insensitive disk: no shared temporary file."
    folder = three_samples(tmp_path / 'calls')
    errors = []
    def run():
        try: run_company('FlexXray', folder, tmp_path / 'out', local_settings(tmp_path / 'cache'), executor='local')
        except Exception as e: errors.append(e)
    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert not errors, errors
    out = tmp_path / 'out' / 'FlexXray'
    assert sorted(p.name for p in out.iterdir()) == ['analysis.xlsx', 'batch_report.json', 'results.json', 'run.log']
    assert len(results_json(tmp_path / 'out')['transcripts']) == 3
    assert not [p for p in (tmp_path / 'cache').rglob('*.tmp')]

def test_settings_are_validated(tmp_path):
    for kw, message in [(dict(config={'batch_size': 0}), 'batch_size=0: Input should be greater than or equal to 1'),
                        (dict(batch_size=-3), 'batch_size=-3'), (dict(config={'max_retries': 'five'}), "max_retries='five'"),
                        (dict(config={'batchsize': 5}), 'unknown setting batchsize'), (dict(workers=0), 'workers=0')]:
        with pytest.raises(ValueError) as e: run_company('FlexXray', SAMPLES, tmp_path / 'out', local_settings(tmp_path), **kw)
        assert message in str(e.value) and '\n' not in str(e.value), (kw, str(e.value))
    assert not (tmp_path / 'out').exists()  # refused before anything was written

def test_dask_missing_is_a_one_line_error(tmp_path):
    code = ("import sys; sys.modules['distributed'] = None\n"
            "from flexxray_nb.cli import main; sys.exit(main(['run', '--company', 'FlexXray', '--executor', 'dask']))")
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and res.stderr.splitlines() == ["flexxray: executor 'dask' needs Dask: pip install 'flexxray_nb[dask]'"]
    assert not (tmp_path / 'reports').exists()

# The batch processing guide's Python examples, read from the guide itself (when this clone has it) with only the
# imports changed: its modules `batch_manager`, `streamlined_quote_analysis` and `company_config` are flexxray_nb.batch.
GUIDE = SHARED / 'mission' / 'batch_processing_guide.md'
GUIDE_MODULES = ('batch_manager', 'streamlined_quote_analysis', 'company_config')

def guide_examples() -> dict[str, str]:
    "The guide's Python blocks by the heading above them, imports pointed at flexxray_nb.batch."
    if not GUIDE.is_file(): pytest.skip('no ../shared/mission in this clone')
    out, heading = {}, None
    for m in re.finditer(r'^#+ ([^\n]*)$|^```(\w*)\n(.*?)^```', GUIDE.read_text(encoding='utf-8'), re.M | re.S):
        if m[1]: heading = m[1].strip('* ')
        elif m[2] == 'python':
            out[heading] = re.sub(rf'^from ({"|".join(GUIDE_MODULES)}) import', 'from flexxray_nb.batch import', m[3], flags=re.M)
    return out

def check_guide_outputs(results, n):
    for df in (results.metrics_df(), results.errors_df(), results.answers_df()): assert isinstance(df, pd.DataFrame)
    assert results.errors_df().empty and len(results.answers_df()) == 7
    summary = results.report['summary']
    assert summary['total_transcripts'] == n
    assert re.fullmatch(r'\d+\.\d\d minutes', summary['processing_time'])
    assert re.fullmatch(r'\$\d+\.\d\d', summary['api_cost']) and summary['success_rate'] == '100.0%'
    assert set(results.report) == {'summary', 'results', 'performance'}

def test_guide_examples_as_written(tmp_path, monkeypatch):
    "Basic, advanced and per-company processing, exactly as the guide writes them, against the loopback OpenAI server."
    examples = guide_examples()
    monkeypatch.chdir(tmp_path)  # BatchManager() writes reports/ and cache/ in the working directory
    for var in [*ENV_NAMES, *(v for v in os.environ if v.startswith('FLEXXRAY_') and v != 'FLEXXRAY_COMPANIES')]:
        monkeypatch.delenv(var, raising=False)  # the settings come from the defaults and the examples' arguments
    shutil.copytree(SAMPLES, tmp_path / 'FlexXray Transcripts')
    n = len(list((tmp_path / 'FlexXray Transcripts').iterdir()))
    ns = {}
    with LoopbackServer() as srv:
        monkeypatch.setenv('OPENAI_BASE_URL', srv.base_url)
        exec(examples['Basic Batch Processing'], ns)
        check_guide_outputs(ns['results'], n)
        assert ns['results'].performance_metrics['api_calls'] > 0 and srv.requests('/chat/completions')
        exec(examples['Advanced Batch Processing'], ns)
        check_guide_outputs(ns['results'], n)
        assert ns['results'].performance_metrics['resumed'] == n  # the basic run's checkpoints apply
        exec(examples['Company Configuration Integration'], ns)
        check_guide_outputs(ns['company_batch_processing']('FlexXray'), n)
    log = (tmp_path / 'reports' / 'FlexXray' / 'run.log').read_text()
    assert log.count(' run FlexXray: ') == 3 and 'batch size 15' in log
    for f in tmp_path.rglob('*'):  # the key reached the client only
        assert not f.is_file() or b'your_key' not in f.read_bytes(), f

def test_guide_helpers_behave_as_the_guide_writes_them():
    "The guide writes out adjust_batch_size, update_metrics and check_resources; ours give the same answers."
    examples, guide = guide_examples(), {}
    exec(examples['Memory Issues'], guide); exec(examples['Performance Metrics'], guide)
    for size in (5, 8, 20, 48, 50):
        for memory in (10, 49.9, 50, 65, 80, 80.1, 99):
            assert adjust_batch_size(size, memory) == guide['adjust_batch_size'](size, memory), (size, memory)
    ours, theirs = dict(guide['performance_metrics']), dict(guide['performance_metrics'])
    update_metrics(ours, api_calls=3, error_count=1, unknown=9); guide['update_metrics'](theirs, api_calls=3, error_count=1, unknown=9)
    assert ours == theirs
    exec(examples['Resource Management'].split('# Use in batch processing')[0], guide)
    assert check_resources() == guide['check_resources']()
