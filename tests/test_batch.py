"""The batch engine: a run killed at random moments and restarted ends with the results of an uninterrupted run and
never redoes a finished call; a failing file is retried, then recorded; Dask gives the local results; the batch
processing guide's examples run as written."""
import json, os, pathlib, random, re, shutil, signal, subprocess, sys, time
import pandas as pd
import pytest
from conftest import ROOT, SAMPLES
sys.path.insert(0, str(ROOT / 'benchmarks'))
from make_corpus import make_corpus
from flexxray_nb.batch import Analyzer, BatchManager, StreamlinedQuoteAnalysis, checkpoint_key, run_company
from flexxray_nb.companies import load_company
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

@pytest.mark.parametrize('executor', ['local', 'process'])
def test_failing_file_is_retried_then_recorded(tmp_path, executor):
    "A file whose checkpoint cannot be written (its slot in the cache is a directory) makes the worker raise."
    folder = three_samples(tmp_path / 'calls')
    bad = sorted(folder.iterdir())[1]
    s = local_settings(tmp_path / 'cache', max_retries=2)
    company = load_company('FlexXray')
    (tmp_path / 'cache' / 'checkpoints' / f'{checkpoint_key(bad, company, s)}.json').mkdir(parents=True)
    r = BatchManager(executor=executor, workers=2, out_dir=tmp_path / 'out').process_transcripts_batch(
        folder, Analyzer('FlexXray', s))
    perf = r.performance_metrics
    assert (perf['retried'], perf['error_count'], perf['processed'], perf['success_rate']) == (2, 1, 3, 66.7)
    err = r.errors_df()
    assert err.file.tolist() == [str(bad)] and err.error[0].startswith('failed after 3 attempts: IsADirectoryError')
    res = results_json(tmp_path / 'out')
    assert [t['status'] for t in res['transcripts']] == ['ok', 'error', 'ok']
    assert res['transcripts'][1]['error'] == err.error[0]
    report = json.loads((tmp_path / 'out' / 'FlexXray' / 'batch_report.json').read_text())
    assert report['summary']['success_rate'] == '66.7%'
    assert [x['error'] for x in report['results'] if x['status'] == 'error'] == [err.error[0]]
    assert [g['file'] for g in res['grid']] == [res['transcripts'][i]['file'] for i in (0, 2)]  # the others were analysed
    assert any(q['quotes'] for q in res['questions'])
    assert 'failed after 3 attempts' in (tmp_path / 'out' / 'FlexXray' / 'run.log').read_text()

def test_file_vanishing_mid_run_is_recorded(tmp_path):
    folder = three_samples(tmp_path / 'calls')
    last = sorted(folder.iterdir())[-1]
    r = BatchManager(out_dir=tmp_path / 'out').process_transcripts_batch(
        folder, Analyzer('FlexXray', local_settings(tmp_path / 'cache')), batch_size=1,
        on_batch=lambda b: last.unlink() if b['batch'] == 1 else None)
    assert r.errors_df().file.tolist() == [str(last)]
    assert 'cannot read file' in r.errors_df().error[0]
    res = results_json(tmp_path / 'out')
    assert [t['status'] for t in res['transcripts']] == ['ok', 'ok', 'error']

def test_dask_matches_local(tmp_path):
    pytest.importorskip('distributed')
    runs = {}
    for ex in ('local', 'dask'):
        run_company('FlexXray', SAMPLES, tmp_path / ex, local_settings(tmp_path / f'cache_{ex}'), executor=ex, workers=2)
        runs[ex] = results_json(tmp_path / ex)
    for k in SAME: assert runs['dask'][k] == runs['local'][k], k
    assert runs['dask']['metrics']['performance']['processed'] == len(runs['local']['transcripts']) == 11

def check_guide_outputs(results, n):
    for df in (results.metrics_df(), results.errors_df(), results.answers_df()): assert isinstance(df, pd.DataFrame)
    assert results.errors_df().empty and len(results.answers_df()) == 7
    summary = results.report['summary']
    assert summary['total_transcripts'] == n
    assert re.fullmatch(r'\d+\.\d\d minutes', summary['processing_time'])
    assert re.fullmatch(r'\$\d+\.\d\d', summary['api_cost']) and summary['success_rate'] == '100.0%'
    assert set(results.report) == {'summary', 'results', 'performance'}

def test_guide_examples(tmp_path, monkeypatch):
    "The guide's basic and advanced examples as written: with an API key, against the loopback OpenAI server."
    monkeypatch.chdir(tmp_path)  # BatchManager() writes reports/ and cache/ in the working directory
    for var in [*ENV_NAMES, *(v for v in os.environ if v.startswith('FLEXXRAY_') and v != 'FLEXXRAY_COMPANIES')]:
        monkeypatch.delenv(var, raising=False)  # the settings come from the defaults and the example's arguments
    shutil.copytree(SAMPLES, tmp_path / 'FlexXray Transcripts')
    n = len(list((tmp_path / 'FlexXray Transcripts').iterdir()))
    with LoopbackServer() as srv:
        monkeypatch.setenv('OPENAI_BASE_URL', srv.base_url)

        # Basic Batch Processing
        analyzer = StreamlinedQuoteAnalysis(api_key="your_key")
        batch_manager = BatchManager()
        results = batch_manager.process_transcripts_batch(transcript_directory="FlexXray Transcripts/", analyzer=analyzer,
                                                          batch_size=20)
        check_guide_outputs(results, n)
        assert results.performance_metrics['api_calls'] > 0 and srv.requests('/chat/completions')

        # Advanced Batch Processing
        config = {"batch_size": 15, "max_quotes": 75, "batch_delay": 2.0, "max_retries": 5, "enable_monitoring": True}
        results = batch_manager.process_transcripts_batch(transcript_directory="FlexXray Transcripts/", analyzer=analyzer,
                                                          config=config)
        check_guide_outputs(results, n)
    assert results.performance_metrics['resumed'] == n  # the basic run's checkpoints apply
    assert not results.timeline.empty and 'batch size 15' in (tmp_path / 'reports' / 'FlexXray' / 'run.log').read_text()
    for f in tmp_path.rglob('*'):  # the key reached the client only
        assert not f.is_file() or b'your_key' not in f.read_bytes(), f
