import json, os, pathlib, subprocess, sys
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get('FLEXXRAY_SHARED', ROOT.parent / 'shared'))
SAMPLES = ROOT / 'flexxray_nb' / 'samples'
BIN = pathlib.Path(sys.executable).parent

def flexxray(*args, env=None, cwd=None, check=True):
    "Run the real `flexxray` console script; returns the completed process."
    res = subprocess.run([str(BIN / 'flexxray'), *map(str, args)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **(env or {})}, cwd=cwd)
    if check and res.returncode != 0: raise AssertionError(f'flexxray {args} exited {res.returncode}: {res.stderr[-2000:]}')
    return res

def jsonl(text):
    return [json.loads(l) for l in text.splitlines() if l.startswith('{')]

@pytest.fixture(scope='session')
def shared_data():
    "The shared evaluation data, or a skip where this clone has none."
    if not (SHARED / 'data' / 'samples' / 'manifest.json').is_file(): pytest.skip('no ../shared/data in this clone')
    return SHARED / 'data'
