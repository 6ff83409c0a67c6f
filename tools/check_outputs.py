"""Whether the outputs stored in the notebooks are what the code gives now: each notebook is executed into a temporary
copy (nbconvert, a real kernel) and every code cell that shows an output is compared with the fresh run.

    .venv/bin/python tools/check_outputs.py [GLOB]      # e.g. '14_*.ipynb'; exit status 1 when any output is stale

Rich outputs are compared by their richest text form (HTML, then Markdown, then plain text), with digits and generated
element ids masked, because times, sizes and plotly's div ids change from run to run. Re-execute a stale notebook with
`.venv/bin/jupyter nbconvert --to notebook --execute --inplace nbs/NN_x.ipynb`, then `nbdev-clean`.
"""
import difflib, json, os, pathlib, re, subprocess, sys, tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent

def shown(cell) -> str:
    "What a cell shows, as comparable text."
    parts = []
    for o in cell.get('outputs', []):
        if 'text' in o: parts.append(''.join(o['text']))
        data = o.get('data', {})
        kind = next((k for k in ('text/html', 'text/markdown', 'text/plain') if k in data), None)
        if kind: parts.append(re.sub(r'id="[^"]*"|[0-9a-f]{8}-[0-9a-f-]{27}', '', ''.join(data[kind])))
    return re.sub(r'\d+(\.\d+)?', '#', '\n'.join(parts))

def stale_cells(nb: pathlib.Path, out: pathlib.Path) -> list[tuple[str, list[str]]]:
    "The ids of `nb`'s cells whose stored output differs from a fresh run, with the first lines of each difference."
    fresh = out / nb.name
    subprocess.run([str(ROOT / '.venv/bin/jupyter'), 'nbconvert', '--to', 'notebook', '--execute', '--output', str(fresh),
                    str(nb)], cwd=nb.parent, check=True, capture_output=True, env={**os.environ, 'TQDM_DISABLE': '1'})
    now = {c.get('id'): c for c in json.loads(fresh.read_text())['cells']}
    return [(c['id'], list(difflib.unified_diff(shown(c).splitlines(), shown(now[c['id']]).splitlines(), lineterm='', n=0))[2:8])
            for c in json.loads(nb.read_text())['cells']
            if c['cell_type'] == 'code' and c.get('outputs') and shown(c) != shown(now[c['id']])]

def main():
    pattern = sys.argv[1] if len(sys.argv) > 1 else '*.ipynb'
    stale = 0
    with tempfile.TemporaryDirectory() as out:
        for nb in sorted((ROOT / 'nbs').glob(pattern)):
            cells = stale_cells(nb, pathlib.Path(out))
            stale += len(cells)
            print(f'{nb.name}: {"stale: " + ", ".join(c for c, _ in cells) if cells else "outputs current"}', flush=True)
            for _, diff in cells: print('    ' + '\n    '.join(line[:150] for line in diff))
    sys.exit(1 if stale else 0)

if __name__ == '__main__':
    main()
