"""No credential appears in any output: a planted key that the loopback server echoes in its error bodies, and
credentials inside `--base-url` (echoed by the server as it received them), through full `flexxray run`s with the
openai backend; then every file the runs wrote is searched: notebook, HTML, workbook (unzipped), results, batch report,
log, the cache folder. (Masked keys and echoes in retried errors: tests/test_llm.py.)"""
import base64, json, pathlib, zipfile
from loopback import LoopbackServer
from conftest import flexxray

KEY = 'sk-proj-PLANTED0123456789abcdefSECRET'
GATEWAY = ('gw-user', 'GWPASS-PLANTED-0123456789')  # user and password in the base URL

def contents(path: pathlib.Path) -> bytes:
    "A file's bytes, and for zip containers (xlsx) the bytes of every member."
    data = path.read_bytes()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z: data += b''.join(z.read(n) for n in z.namelist())
    return data

def run(srv, tmp_path, name, base_url):
    return flexxray('run', '--company', 'FlexXray', '--backend', 'openai', '--base-url', base_url, '--out', tmp_path / name,
                    env={'OPENAI_API_KEY': KEY, 'CACHE_DIR': str(tmp_path / name / 'cache')}, cwd=tmp_path)

def test_planted_credentials_are_in_no_artifact(tmp_path):
    with LoopbackServer() as srv:
        srv.inject('401', echo='whole')                     # the key is refused, and echoed whole
        bearer = run(srv, tmp_path, 'bearer', srv.base_url)
        assert [e['auth'] for e in srv.journal if e['fault'] == '401'] == [True]   # the key was sent, and echoed back
        srv.inject('403', path='')                           # a gateway with credentials in its URL echoes what it got
        user, password = GATEWAY
        gateway = run(srv, tmp_path, 'gateway', srv.base_url.replace('http://', f'http://{user}:{password}@'))
    for name in ('bearer', 'gateway'):
        m = json.loads((tmp_path / name / 'FlexXray' / 'results.json').read_text())['metrics']
        assert m['llm_status'] == 'credentials' and '[redacted]' in m['llm_message'], m
    files = [p for p in tmp_path.rglob('*') if p.is_file()]
    assert {'report.ipynb', 'report.html', 'analysis.xlsx', 'results.json', 'run.log', 'batch_report.json', 'llm.sqlite'} <= {p.name for p in files}
    basic = base64.b64encode(f'{user}:{password}'.encode())
    planted = [KEY.encode(), KEY[-12:].encode(), password.encode(), basic, basic[:8] + b'****']
    for p in files:
        data = contents(p)
        for secret in planted: assert secret not in data, (p, secret)
    for res in (bearer, gateway):
        for secret in planted: assert secret.decode() not in res.stdout + res.stderr
