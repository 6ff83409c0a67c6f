"Settings layering, and every environment variable the guide names is actually read, end to end."
import json, time
from flexxray_nb.core import load_settings, Settings
from conftest import ROOT, flexxray

def test_settings_ini_is_the_default():
    assert load_settings(ROOT / 'settings.ini', environ={}) == Settings()

def test_each_guide_variable_is_read(monkeypatch):
    for var, field, value, want in [('BATCH_SIZE', 'batch_size', '7', 7), ('MAX_QUOTES', 'max_quotes', '9', 9),
                                    ('CACHE_DIR', 'cache_dir', '/tmp/fx-cache', '/tmp/fx-cache'),
                                    ('CONFIDENCE_THRESHOLD', 'confidence_threshold', '0.55', 0.55),
                                    ('BATCH_DELAY', 'batch_delay', '0.25', 0.25), ('MAX_RETRIES', 'max_retries', '5', 5)]:
        monkeypatch.setenv(var, value)
        assert getattr(load_settings(ROOT / 'settings.ini'), field) == want, var
        monkeypatch.delenv(var)

def test_precedence_company_env_cli(tmp_path, monkeypatch):
    ini = tmp_path / 'settings.ini'
    ini.write_text('[settings]\nmax_quotes = 40\nbatch_size = 11\ntop_k = 4\n')
    monkeypatch.setenv('MAX_QUOTES', '30')
    s = load_settings(ini, company={'max_quotes': 35, 'batch_size': 12})
    assert (s.top_k, s.batch_size, s.max_quotes) == (4, 12, 30)
    assert load_settings(ini, company={'max_quotes': 35}, max_quotes=3).max_quotes == 3

def test_bad_threshold_is_a_clear_error(tmp_path):
    res = flexxray('parse', ROOT / 'flexxray_nb' / 'samples', env={'CONFIDENCE_THRESHOLD': '2'}, check=False)
    assert res.returncode == 2 and 'confidence_threshold' in res.stderr

def test_max_quotes_and_threshold_reach_the_report_kernel(tmp_path):
    "The environment reaches the papermill kernel: MAX_QUOTES caps the quotes, CONFIDENCE_THRESHOLD flags speakers."
    flexxray('run', '--company', 'FlexXray', '--out', tmp_path, env={'MAX_QUOTES': '3', 'CONFIDENCE_THRESHOLD': '0.999'})
    res = json.loads((tmp_path / 'FlexXray' / 'results.json').read_text())
    assert max(len(q['quotes']) for q in res['questions']) == 3
    speakers = [s for t in res['transcripts'] for s in t['speakers']]
    assert speakers and all(s['needs_review'] == (s['confidence'] < 0.999) for s in speakers)
    assert any(s['needs_review'] for s in speakers)

def test_bad_setting_is_a_clear_error_never_a_loop(tmp_path):
    "batch_size=0 once looped forever; now every way of giving it stops at once with an error naming it, writing nothing."
    for args, env, name in [(['--batch-size', '0'], {}, 'batch_size'), ([], {'BATCH_SIZE': '0'}, 'batch_size'),
                            (['--workers', '0'], {}, 'workers'), ([], {'FLEXXRAY_EXECUTOR': 'threads'}, 'executor')]:
        t0 = time.perf_counter()
        res = flexxray('run', '--company', 'FlexXray', '--out', tmp_path / 'out', *args, env=env, check=False)
        one_line = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(one_line) == 1 and one_line[0].startswith('flexxray'), (args, res.stderr)
        assert name in res.stderr or f"--{name.replace('_', '-')}" in res.stderr, (args, res.stderr)  # the setting or its option
        assert time.perf_counter() - t0 < 60 and 'Traceback' not in res.stderr
    assert not (tmp_path / 'out').exists()
