"Bad input gets a clear one-line error for that file, and the rest of the batch goes on."
import json, shutil, zipfile
from conftest import SAMPLES, flexxray, jsonl

def make_bad_folder(d):
    shutil.copy(SAMPLES / 'GLG - Former VP Operations FlexXray - 2025-03-14.txt', d / 'a_good.txt')
    (d / 'b_empty.txt').write_bytes(b'')
    (d / 'c_binary.txt').write_bytes(bytes(range(256)) * 20)
    (d / 'd_undecodable.txt').write_bytes(b'Jane Doe: price was \x81\x8d\x8f\x90\x9d fine\n')
    (d / 'e_corrupt.docx').write_bytes(b'PK\x03\x04' + b'\x00' * 50)
    (d / 'f_corrupt.pdf').write_bytes(b'%PDF-1.7\n1 0 obj <<>> garbage')
    (d / 'g_nolabels.txt').write_text('Some notes from a call about inspection services, written up afterwards.\n\nNo speakers here.\n')
    shutil.copy(d / 'a_good.txt', d / 'h_duplicate.txt')
    z = d / 'i_notdocx.docx'
    with zipfile.ZipFile(z, 'w') as zf: zf.writestr('hello.txt', 'not a word file')

def test_parse_reports_each_bad_file_and_goes_on(tmp_path):
    make_bad_folder(tmp_path)
    res = flexxray('parse', tmp_path)
    rows = {r['file'].rsplit('/', 1)[-1]: r for r in jsonl(res.stdout)}
    assert len(rows) == 9
    assert rows['a_good.txt']['error'] is None and len(rows['a_good.txt']['turns']) > 20
    expect = {'b_empty.txt': 'empty', 'c_binary.txt': 'binary', 'd_undecodable.txt': 'undecodable',
              'e_corrupt.docx': 'corrupt', 'f_corrupt.pdf': 'PDF', 'h_duplicate.txt': 'duplicate of',
              'i_notdocx.docx': 'corrupt'}
    for name, word in expect.items():
        err = rows[name]['error']
        assert err and word in err and '\n' not in err, (name, err)
        assert rows[name]['turns'] == []
    # no labels: kept, one 'Unknown' turn, said so in a warning
    nl = rows['g_nolabels.txt']
    assert nl['error'] is None and [t['speaker'] for t in nl['turns']] == ['Unknown'] and nl['warnings']
    assert res.returncode == 0
    assert res.stderr.count('\n') >= len(expect)  # one line per bad file on stderr

def test_exit_status_when_every_file_fails(tmp_path):
    (tmp_path / 'x.txt').write_bytes(b'')
    assert flexxray('parse', tmp_path / 'x.txt', check=False).returncode == 1
    assert flexxray('parse', tmp_path / 'nothing-here', check=False).returncode in (1, 2)

def test_run_completes_with_broken_files(tmp_path):
    src = tmp_path / 'calls'; src.mkdir()
    make_bad_folder(src)
    flexxray('run', '--company', 'FlexXray', '--transcripts', src, '--out', tmp_path / 'out')
    res = json.loads((tmp_path / 'out' / 'FlexXray' / 'results.json').read_text())
    status = {t['file'].rsplit('/', 1)[-1]: t['status'] for t in res['transcripts']}
    assert status['a_good.txt'] == 'ok' and status['c_binary.txt'] == 'error' and status['h_duplicate.txt'] == 'error'
    assert res['metrics']['failed'] == 7 and res['metrics']['succeeded'] == 2
