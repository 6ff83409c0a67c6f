"""The API key never appears in any output: a planted key, a full `flexxray run` with the openai backend (against the
loopback server), then every file the run wrote is searched: notebook, HTML, workbook (unzipped), results, log, cache."""
import pathlib, zipfile
from loopback import LoopbackServer
from conftest import flexxray

KEY = 'sk-proj-PLANTED0123456789abcdefSECRET'

def contents(path: pathlib.Path) -> bytes:
    "A file's bytes, and for zip containers (xlsx) the bytes of every member."
    data = path.read_bytes()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z: data += b''.join(z.read(n) for n in z.namelist())
    return data

def test_planted_key_is_in_no_artifact(tmp_path):
    with LoopbackServer() as srv:
        res = flexxray('run', '--company', 'FlexXray', '--backend', 'openai', '--base-url', srv.base_url, '--out', tmp_path / 'out',
                       env={'OPENAI_API_KEY': KEY, 'CACHE_DIR': str(tmp_path / 'cache')}, cwd=tmp_path)
        assert any(e['auth'] for e in srv.journal) and len(srv.requests('/chat/completions')) > 5  # the key was used
    files = [p for p in tmp_path.rglob('*') if p.is_file()]
    names = {p.name for p in files}
    assert {'report.ipynb', 'report.html', 'analysis.xlsx', 'results.json', 'run.log', 'llm.sqlite'} <= names
    for p in files:
        assert KEY.encode() not in contents(p), p
        assert KEY[-12:].encode() not in contents(p), p
    assert KEY not in res.stdout + res.stderr
