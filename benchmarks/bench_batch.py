"""Wall time, throughput and peak memory of the whole local batch pipeline on synthetic one-hour calls.

    .venv/bin/python benchmarks/bench_batch.py [--sizes 100 1000] [--executors process local] [--workers 2] [--corpus DIR]

For each executor and size: `BatchManager().process_transcripts_batch` over a folder of that many calls made by
make_corpus.py (about 9k words each), with a fresh cache_dir so nothing is resumed, outputs written (results.json,
workbook, report), in a fresh Python process so one run's heap does not count in the next one's memory. Peak RSS is
the run's own `performance_metrics['peak_rss_mb']` (the process and its workers, sampled every 0.5 s while digests
are made and combined); `whole run` is this script's own sampling of the same process tree every 0.1 s from start
to exit, outputs included. CPU seconds (main process, workers) and the load average are printed because wall time on
a shared machine says as much about the neighbours as about the code: `CPU-bound floor` is the wall time the same
CPU work would take on idle cores, max(main CPU, all CPU / min(cores, workers)).
The issue's targets: 1,000 calls in at most 60 s on 2 cores, peak RSS at most 400 MB and flat from 100 to 1,000.
"""
import argparse, json, os, pathlib, resource, subprocess, sys, tempfile, time
import psutil
from make_corpus import make_corpus

HERE = pathlib.Path(__file__).resolve().parent

def corpus(root: pathlib.Path, n: int) -> pathlib.Path:
    "A folder of exactly `n` calls under `root` (made once, then reused)."
    d = root / f'calls{n}'
    if not d.is_dir() or len(list(d.iterdir())) != n: make_corpus(n, d)
    return d

def run_once(folder, executor: str, workers: int, work_dir) -> dict:
    "One timed batch run in this process; returns its figures."
    from flexxray_nb.batch import Analyzer, BatchManager
    from flexxray_nb.core import Settings
    s = Settings(cache_dir=f'{work_dir}/cache', log_progress=False, backend='local')
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)  # after the imports
    t0 = time.perf_counter()
    r = BatchManager(executor=executor, workers=workers, out_dir=f'{work_dir}/out').process_transcripts_batch(
        folder, Analyzer('FlexXray', s))
    wall = time.perf_counter() - t0
    m, me, kids = r.performance_metrics, resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    main_cpu = me.ru_utime + me.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    return dict(executor=executor, workers=workers, n=m['total_transcripts'], wall_s=round(wall, 2),
                pipeline_s=m['processing_time'], per_s=round(m['total_transcripts'] / wall, 1), peak_rss_mb=m['peak_rss_mb'],
                main_cpu_s=round(main_cpu, 1), worker_cpu_s=round(kids.ru_utime + kids.ru_stime, 1),
                processed=m['processed'], resumed=m['resumed'], failed=m['error_count'])

def tree_rss_mb(proc: psutil.Process) -> float:
    "Resident memory of a process and its descendants."
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try: total += p.memory_info().rss
        except psutil.Error: pass
    return total / 2**20

def measure(folder, executor: str, workers: int) -> dict:
    "`run_once` in a fresh Python process, with a fresh cache and output folder."
    with tempfile.TemporaryDirectory(prefix='bench_batch_') as work:
        code = (f'import sys, json; sys.path.insert(0, {str(HERE)!r}); from bench_batch import run_once; '
                f'print(json.dumps(run_once({str(folder)!r}, {executor!r}, {workers}, {work!r})))')
        load0 = os.getloadavg()[0]
        with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
            p = subprocess.Popen([sys.executable, '-c', code], stdout=out, stderr=err, text=True,
                                 env={**os.environ, 'TQDM_DISABLE': '1'})
            proc, peak = psutil.Process(p.pid), 0.0
            while p.poll() is None:
                try: peak = max(peak, tree_rss_mb(proc))
                except psutil.Error: pass
                time.sleep(0.1)
            out.seek(0); err.seek(0)
            if p.returncode: raise RuntimeError(f'{executor} on {folder} failed:\n{err.read()[-3000:]}')
            r = json.loads(out.read().strip().splitlines()[-1])
        cores = os.cpu_count() or 1
        lanes = 1 if executor == 'local' else min(cores, workers)
        floor = max(r['main_cpu_s'], (r['main_cpu_s'] + r['worker_cpu_s']) / lanes)
        return r | dict(whole_run_peak_rss_mb=round(peak, 1), cpu_floor_s=round(floor, 1), load_before=round(load0, 1),
                        load_after=round(os.getloadavg()[0], 1))

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--sizes', type=int, nargs='+', default=[100, 1000])
    ap.add_argument('--executors', nargs='+', default=['process', 'local'])
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--corpus', help='folder to keep the generated calls in (default: a temporary folder)')
    a = ap.parse_args()
    print(f'{os.cpu_count()} CPUs; executors {a.executors}, {a.workers} workers; sizes {a.sizes}')
    with tempfile.TemporaryDirectory(prefix='bench_corpus_') as tmp:
        root = pathlib.Path(a.corpus or tmp)
        folders = {n: corpus(root, n) for n in a.sizes}
        rows = []
        for ex in a.executors:
            for n in a.sizes:
                r = measure(folders[n], ex, a.workers); rows.append(r)
                print(f"{ex:8} {n:5d} calls  {r['wall_s']:6.1f} s wall  {r['per_s']:5.1f} calls/s  "
                      f"peak RSS {r['peak_rss_mb']:5.0f} MB (whole run {r['whole_run_peak_rss_mb']:.0f} MB)  "
                      f"CPU main {r['main_cpu_s']:.1f} s + workers {r['worker_cpu_s']:.1f} s, "
                      f"CPU-bound floor {r['cpu_floor_s']:.1f} s  load {r['load_before']}->{r['load_after']}  "
                      f"processed {r['processed']} resumed {r['resumed']} failed {r['failed']}", flush=True)
    by = {(r['executor'], r['n']): r for r in rows}
    if ('process', 1000) in by:
        r = by['process', 1000]
        print(f"target 1,000 calls <= 60 s on 2 cores (process, {a.workers} workers): {r['wall_s']:.1f} s wall: "
              f"{'met' if r['wall_s'] <= 60 else 'MISSED'} (CPU-bound floor {r['cpu_floor_s']:.1f} s)")
    for ex in a.executors:
        if (ex, 100) in by and (ex, 1000) in by:
            for key, what in (('peak_rss_mb', 'run metric'), ('whole_run_peak_rss_mb', 'whole run')):
                lo, hi = by[ex, 100][key], by[ex, 1000][key]
                per_call = (hi - lo) / 900 * 1024
                print(f"target peak RSS <= 400 MB and flat ({ex}, {what}): {lo:.0f} MB at 100, {hi:.0f} MB at 1,000 "
                      f"({hi - lo:+.0f} MB, {100 * (hi - lo) / lo:+.0f}%, {per_call:.0f} KB per call, "
                      f"{hi + per_call * 9000 / 1024:.0f} MB at 10,000 if linear): "
                      f"{'met' if hi <= 400 and hi - lo <= 0.1 * lo else 'MISSED'} (flat = at most +10%)")

if __name__ == '__main__':
    main()
