"""`flexxray run` end to end on synthetic one-hour calls: wall time by phase, peak memory of the whole process tree, CPU
time, and the size of every report file.

    .venv/bin/python benchmarks/bench_batch.py [--sizes 1000 10000] [--corpus DIR] [--executor auto] [--workers N]

For each size, a folder of that many calls made by make_corpus.py (about 9k words each; kept in --corpus to be reused),
then `flexxray run --company FlexXray --transcripts DIR --out OUT` in a fresh process with a fresh CACHE_DIR, so nothing
is resumed and every report file (report.ipynb, report.html, analysis.xlsx, results.json) is written. While it runs,
the process tree (the CLI, the papermill kernel, the run's workers) is sampled every 0.1 s: resident memory summed over
the processes (`RSS`, which counts pages the processes share once per process) and proportional set size (`PSS`,
which shares them out), and each process's CPU time. The phases come from run.log's timestamps: start-up (CLI,
kernel, imports), digests (the run's window), combine and outputs (the answers, results.json, the workbook), and the
report (the notebook's charts and tables, then the HTML). The machine is shared: the load average before and after
each run, the cores and the commit are printed so a figure can be judged and measured again.

The issue's targets: 1,000 calls in at most 30 s on 2 cores; 10,000 calls with peak RSS at most 1.3 times the 1,000-call
figure and report.html at most 5 MB.
"""
import argparse, datetime, os, pathlib, platform, re, subprocess, sys, tempfile, time
import psutil
from make_corpus import make_corpus

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
FLEXXRAY = pathlib.Path(sys.executable).parent / 'flexxray'
REPORT_FILES = ('report.html', 'report.ipynb', 'analysis.xlsx', 'results.json', 'batch_report.json')

def corpus(root: pathlib.Path, n: int) -> pathlib.Path:
    "A folder of exactly `n` calls under `root` (made once, then reused)."
    d = root / f'calls{n}'
    if not d.is_dir() or len(list(d.iterdir())) != n: make_corpus(n, d)
    return d

def pss(pid: int) -> int:
    "A process's proportional set size in bytes (0 where the kernel does not say)."
    try:
        with open(f'/proc/{pid}/smaps_rollup') as f: return next((int(l.split()[1]) * 1024 for l in f if l.startswith('Pss:')), 0)
    except OSError: return 0

class TreeSampler:
    "Peak RSS and PSS of a process and its descendants, and the CPU time each of them used."
    def __init__(self, pid: int): self.root, self.peak_rss, self.peak_pss, self.cpu, self.procs = psutil.Process(pid), 0, 0, {}, 0
    def sample(self):
        rss = pss_ = 0
        for p in [self.root, *self.root.children(recursive=True)]:
            try:
                rss += p.memory_info().rss; pss_ += pss(p.pid)
                t = p.cpu_times(); self.cpu[p.pid] = (' '.join(p.cmdline()[1:3])[-40:] or p.name(), t.user + t.system)
            except psutil.Error: pass
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss_)
        self.procs = max(self.procs, len(self.cpu))

def phases(log: pathlib.Path, t_start: float, t_end: float) -> dict:
    "Seconds in each phase, from run.log's timestamps and the process's start and end."
    stamps = []
    for line in log.read_text(encoding='utf-8').splitlines():
        t = datetime.datetime.strptime(line[:23], '%Y-%m-%d %H:%M:%S,%f').timestamp()
        stamps.append((t, line[24:]))
    run0 = next(t for t, l in stamps if ' run FlexXray: ' in f' {l}')
    last_batch = [t for t, l in stamps if l.startswith('INFO batch ') and ' files done ' in l][-1]
    done = next(t for t, l in stamps if l.startswith('INFO done: '))
    return dict(startup_s=round(run0 - t_start, 1), digests_s=round(last_batch - run0, 1),
                combine_outputs_s=round(done - last_batch, 1), report_s=round(t_end - done, 1))

def measure(folder: pathlib.Path, n: int, args) -> dict:
    "One `flexxray run` over `folder`, in a fresh process with a fresh cache and output folder."
    with tempfile.TemporaryDirectory(prefix='bench_batch_') as work:
        cmd = [str(FLEXXRAY), 'run', '--company', 'FlexXray', '--transcripts', str(folder), '--out', f'{work}/out']
        if args.executor: cmd += ['--executor', args.executor]
        if args.workers: cmd += ['--workers', str(args.workers)]
        env = {**os.environ, 'CACHE_DIR': f'{work}/cache', 'TQDM_DISABLE': '1'}
        load0 = os.getloadavg()
        t0 = time.time()
        p = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        tree = TreeSampler(p.pid)
        while p.poll() is None:
            tree.sample(); time.sleep(0.1)
        t1 = time.time()
        out, err = p.communicate()
        if p.returncode: raise RuntimeError(f'{" ".join(cmd)} exited {p.returncode}:\n{err[-3000:]}')
        dest = pathlib.Path(work) / 'out' / 'FlexXray'
        sizes = {f: round((dest / f).stat().st_size / 2**20, 2) for f in REPORT_FILES}
        return dict(n=n, command=' '.join(cmd), summary=out.strip().splitlines()[-1], wall_s=round(t1 - t0, 1),
                    **phases(dest / 'run.log', t0, t1), peak_rss_mb=round(tree.peak_rss / 2**20),
                    peak_pss_mb=round(tree.peak_pss / 2**20), cpu_s=round(sum(c for _, c in tree.cpu.values()), 1),
                    cpu_by_process=sorted(((name, round(c, 1)) for name, c in tree.cpu.values()), key=lambda x: -x[1]),
                    processes=tree.procs, sizes_mb=sizes, load_before=load0, load_after=os.getloadavg(),
                    executor=re.search(r'executor (\w+) \((\d+) workers\)', (dest / 'run.log').read_text())[0])

def machine() -> str:
    "What the figures were measured on."
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--', 'flexxray_nb'], cwd=ROOT, capture_output=True, text=True).stdout
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor())
    return (f'{psutil.cpu_count()} CPUs ({cpu}), {psutil.virtual_memory().total / 2**30:.1f} GiB; Python '
            f'{platform.python_version()}; commit {commit or "?"}{" (package modified)" if dirty else ""}; '
            f'{datetime.datetime.now().isoformat(timespec="seconds")}')

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--sizes', type=int, nargs='+', default=[1000, 10000])
    ap.add_argument('--corpus', help='folder to keep the generated calls in (default: a temporary folder)')
    ap.add_argument('--executor', help='passed to flexxray run (default: its own, auto)')
    ap.add_argument('--workers', type=int, help='passed to flexxray run (default: one per core)')
    a = ap.parse_args()
    print(machine())
    print(f're-measure: {sys.executable} {" ".join(sys.argv)}', flush=True)
    with tempfile.TemporaryDirectory(prefix='bench_corpus_') as tmp:
        root = pathlib.Path(a.corpus or tmp)
        rows = {}
        for n in a.sizes:
            r = rows[n] = measure(corpus(root, n), n, a)
            print(f"\n{n:,} calls: {r['wall_s']} s wall = start-up {r['startup_s']} + digests {r['digests_s']} + combine and "
                  f"outputs {r['combine_outputs_s']} + report {r['report_s']}; {r['executor']}; CPU {r['cpu_s']} s over "
                  f"{r['processes']} processes; peak RSS {r['peak_rss_mb']} MB (PSS {r['peak_pss_mb']} MB); load "
                  f"{' '.join(f'{x:.2f}' for x in r['load_before'])} -> {' '.join(f'{x:.2f}' for x in r['load_after'])}")
            print(f"  CPU by process (s): {r['cpu_by_process']}")
            print(f"  files (MB): {r['sizes_mb']}")
            print(f"  {r['summary']}")
            print(f"  command: CACHE_DIR=<fresh> {r['command']}", flush=True)
    cores = psutil.cpu_count()
    if 1000 in rows:
        w = rows[1000]['wall_s']
        print(f"\ntarget: 1,000 calls in at most 30 s on 2 cores ({cores} here): {w} s: {'met' if w <= 30 else 'MISSED'}")
    if 1000 in rows and 10000 in rows:
        lo, hi = rows[1000], rows[10000]
        for key in ('peak_rss_mb', 'peak_pss_mb'):
            print(f"target: peak memory at 10,000 at most 1.3x 1,000 ({key}): {lo[key]} -> {hi[key]} MB, "
                  f"{hi[key] / lo[key]:.2f}x: {'met' if hi[key] <= 1.3 * lo[key] else 'MISSED'}")
    for n, r in rows.items():
        html = r['sizes_mb']['report.html']
        print(f"target: report.html at most 5 MB ({n:,} calls): {html} MB: {'met' if html <= 5 else 'MISSED'}")

if __name__ == '__main__':
    main()
