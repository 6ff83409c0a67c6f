"""A Dask cluster without a shared disk: a real scheduler and two workers started as separate processes, each in its own
directory with its own local directory, and the run's driver in another with relative paths. The cluster gives the
local executor's results; workers never open a transcript path or write a checkpoint; killing the driver mid-run and
starting it again redoes at most the files that were in flight; a call that kills its worker is found and recorded
while the others finish."""
import json, os, pathlib, shutil, signal, socket, subprocess, sys, time
from collections import Counter
from types import SimpleNamespace
import pytest
from conftest import ROOT, SAMPLES
distributed = pytest.importorskip('distributed')
sys.path.insert(0, str(ROOT / 'benchmarks'))
from make_corpus import make_corpus
from flexxray_nb.batch import run_company
from flexxray_nb.core import Settings

BIN = pathlib.Path(sys.executable).parent
SAME = ('questions', 'transcripts', 'grid', 'stances')

# Loaded by each worker when it starts (`dask worker --preload`): it logs every call the worker digests and every
# transcript it would read from a path rather than from the bytes it was sent; a call named `kills-its-worker` kills it.
PRELOAD = '''
import os
import flexxray_nb.batch as batch, flexxray_nb.quotes as quotes
def log(line):
    with open(os.environ['FX_WORKLOG'], 'a', encoding='utf-8') as f: f.write(line + '\\n')
def digest(tr, *args, real=batch.digest, **kw):
    if tr.ok and 'kills-its-worker' in tr.file: os._exit(1)
    if tr.ok: log(f'digest\\t{tr.file}')
    return real(tr, *args, **kw)
def read_transcript(path, file=None, settings=None, data=None, real=quotes.read_transcript):
    if data is None: log(f'read\\t{path}')
    return real(path, file, settings, data)
if not hasattr(batch, 'worklog'):  # Dask may run a preload twice
    batch.worklog, batch.digest, quotes.read_transcript = True, digest, read_transcript
'''

# The run's driver: a process of its own (so that a test can kill it), in its own directory, with relative paths.
DRIVER = '''
import json, sys
from flexxray_nb.batch import run_company
from flexxray_nb.core import Settings
folder, address, batch_size = sys.argv[1:4]
r = run_company('FlexXray', folder, 'out', Settings(cache_dir='cache', log_progress=False), executor='dask',
                scheduler=address, batch_size=int(batch_size))
print(json.dumps(dict(workers=int(r.timeline.workers.max()), worker_rss_mb=float(r.timeline.worker_rss_mb.max()))))
'''

def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
    "A scheduler and two single-threaded workers, each started in a directory of its own; a worker that dies fails its tasks."
    root = tmp_path_factory.mktemp('cluster')
    address, log = f'tcp://127.0.0.1:{free_port()}', root / 'work.log'
    (root / 'preload.py').write_text(PRELOAD)
    env = {**os.environ, 'FX_WORKLOG': str(log), 'DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES': '0'}
    procs = []
    def start(cwd, *args):
        cwd.mkdir()
        procs.append(subprocess.Popen([str(BIN / 'dask'), *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                      stderr=(cwd / 'dask.log').open('w'), start_new_session=True))
    start(root / 'scheduler', 'scheduler', '--host', '127.0.0.1', '--port', address.rsplit(':', 1)[1], '--dashboard-address', ':0')
    workers = [root / 'w1', root / 'w2']
    for w in workers:
        start(w, 'worker', address, '--nworkers', '1', '--nthreads', '1', '--local-directory', str(w / 'local'),
              '--preload', str(root / 'preload.py'), '--no-dashboard')
    try:
        with distributed.Client(address, timeout='60s') as c: c.wait_for_workers(2, timeout=120)
        yield SimpleNamespace(address=address, log=log, workers=workers)
    finally:
        for p in procs: os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try: p.wait(timeout=20)
            except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()

def work_done(cluster, folder) -> Counter:
    "How often the workers digested each call of `folder`, and how often they read one from a path."
    lines = [l.split('\t') for l in cluster.log.read_text(encoding='utf-8').splitlines()] if cluster.log.is_file() else []
    return Counter((what, pathlib.Path(f).name) for what, f in lines if f.startswith(str(folder)))

def start_driver(cluster, driver_dir, batch_size=6) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-c', DRIVER, 'calls', cluster.address, str(batch_size)], cwd=driver_dir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, 'TQDM_DISABLE': '1'})

def results_json(out) -> dict: return json.loads((pathlib.Path(out) / 'FlexXray' / 'results.json').read_text(encoding='utf-8'))

def checkpoint_files(driver_dir) -> dict:
    "Each checkpoint's call and inode (a checkpoint written again gets a new inode)."
    return {json.loads(p.read_text())['file']: p.stat().st_ino for p in (driver_dir / 'cache' / 'checkpoints').glob('*.json')}

def test_cluster_without_shared_disk_matches_local(cluster, tmp_path):
    driver = tmp_path / 'driver'
    make_corpus(24, driver / 'calls', seed=7, words=2000)
    shutil.copytree(SAMPLES, driver / 'calls' / 'samples')  # .docx and .pdf travel as bytes too
    n = len(list((driver / 'calls').rglob('*.*')))
    local = run_company('FlexXray', driver / 'calls', tmp_path / 'local', Settings(cache_dir=str(tmp_path / 'local_cache'),
                        log_progress=False), executor='local')
    p = start_driver(cluster, driver)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    got = results_json(driver / 'out')
    for k in SAME: assert got[k] == local.results[k], k
    assert len(got['transcripts']) == n and got['metrics']['performance']['executor'] == 'dask'
    done = work_done(cluster, driver / 'calls')
    assert not [k for k in done if k[0] == 'read'], 'a worker opened a transcript path'
    parsed = [t for t in got['transcripts'] if t['status'] == 'ok' or t['error'].startswith('duplicate of')]
    assert len(done) == len(parsed) and set(done.values()) == {1}  # each call that parses digested once
    assert len(checkpoint_files(driver)) == n  # written by the driver, in its own cache
    for w in cluster.workers:  # and nothing but Dask's own files in the workers' directories
        assert sorted(p.name for p in w.iterdir()) == ['dask.log', 'local'], list(w.iterdir())
        assert not [p for p in (w / 'local').rglob('*') if p.suffix in ('.json', '.sqlite', '.xlsx')]
    monitor = json.loads(out.splitlines()[-1])
    assert monitor['workers'] == 2 and monitor['worker_rss_mb'] > 100  # the workers' memory, from the scheduler

def test_driver_killed_mid_run_redoes_at_most_the_files_in_flight(cluster, tmp_path):
    driver, n, window = tmp_path / 'driver', 120, 6
    make_corpus(n, driver / 'calls', seed=8, words=1500)
    p = start_driver(cluster, driver, window)
    while p.poll() is None and len(list((driver / 'cache' / 'checkpoints').glob('*.json'))) < 30: time.sleep(0.005)
    assert p.poll() is None, p.stderr.read()[-3000:]
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    before = checkpoint_files(driver)
    assert 30 <= len(before) < n
    p = start_driver(cluster, driver, window)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    res = results_json(driver / 'out')
    assert all(t['status'] == 'ok' for t in res['transcripts']) and len(res['transcripts']) == n
    perf = res['metrics']['performance']
    assert (perf['resumed'], perf['processed']) == (len(before), n - len(before))
    after = checkpoint_files(driver)
    assert {f: after[f] for f in before} == before  # no finished call's checkpoint was written again
    done = work_done(cluster, driver / 'calls')
    assert all(done['digest', pathlib.Path(f).name] == 1 for f in before)  # finished calls were not redone
    assert len(done) == n and sum(done.values()) - n <= window, sum(done.values())  # redone: at most the window

def test_call_that_kills_its_worker_is_found_and_the_others_finish(cluster, tmp_path):
    folder = tmp_path / 'calls'; folder.mkdir()
    for p in sorted(SAMPLES.glob('*.txt'))[:5]: shutil.copy(p, folder)
    shutil.copy(sorted(SAMPLES.glob('*.txt'))[5], folder / 'Expert call that kills-its-worker.txt')
    r = run_company('FlexXray', folder, tmp_path / 'out', Settings(cache_dir=str(tmp_path / 'cache'), log_progress=False),
                    executor='dask', scheduler=cluster.address, batch_size=4)
    errors = r.errors_df().to_dict('records')
    assert [e['file'] for e in errors] == [str(folder / 'Expert call that kills-its-worker.txt')]
    assert errors[0]['error'] == 'failed after 2 attempts: worker lost (KilledWorker)'
    assert r.performance_metrics['processed'] == 6 and r.performance_metrics['error_count'] == 1
    with distributed.Client(cluster.address) as c: c.wait_for_workers(2, timeout=60)  # the nannies restart the killed
