"The bundled FlexXray calls and the shared evaluation samples, through the real `flexxray parse`."
import json
import pytest
from conftest import SAMPLES, flexxray, jsonl

EXPECTED = {  # file-name prefix: (expert label, expert_name in metadata, network)
    'GLG - Former VP': ('Daniel Reyes', 'Daniel Reyes', 'GLG'),
    'Tegus - Director': ('Linda Okafor (Director, Quality Assurance (North America), Heartland Provisions)', 'Linda Okafor', 'Tegus'),
    'Third Bridge Call': ('Expert', 'Mark Delgado', 'Third Bridge'),
    'QA - Inline': ('A', 'Priya Natarajan', 'AlphaSights'),
    'AlphaSights - Plant': ('Rachel Thompson', 'Rachel Thompson', 'AlphaSights'),
    'Former Regional': ('Greg Olsen', 'Greg Olsen', 'Guidepoint'),
    'Pet Food': ('JAMES WHITFIELD', 'James Whitfield', 'Coleman Research'),
    'Jordan_Blake': ('Jordan Blake', 'Jordan Blake', 'GLG'),
    'Food Safety and Recall': ('Samuel Ortiz', 'Dr. Samuel Ortiz', 'Third Bridge'),
    'Co-packer': ('Marcus Lee', 'Marcus Lee', None),
    'Food Safety Auditor': ('Dr. Helen Cho', None, None),
}

@pytest.fixture(scope='module')
def parsed():
    return {r['file'].rsplit('/', 1)[-1]: r for r in jsonl(flexxray('parse', SAMPLES).stdout)}

def test_samples_cover_the_formats(parsed):
    assert len(parsed) >= 8
    assert {r['format'] for r in parsed.values()} >= {'txt', 'md', 'docx', 'pdf', 'vtt', 'srt'}
    for name, r in parsed.items():
        words = sum(len(r['text'][t['start']:t['end']].split()) for t in r['turns'])
        assert 3000 <= words <= 8000, (name, words)
        assert 'fictional' in r['text'].lower(), name

@pytest.mark.parametrize('prefix', sorted(EXPECTED))
def test_sample_expert_and_metadata(parsed, prefix):
    r = next(v for k, v in parsed.items() if k.startswith(prefix))
    label, name, network = EXPECTED[prefix]
    assert r['error'] is None
    experts = [s['name'] for s in r['speakers'] if s['role'] == 'expert']
    assert experts == [label]
    assert sum(s['role'] == 'interviewer' for s in r['speakers']) >= 1
    if name: assert r['metadata']['expert_name'] == name
    assert r['metadata']['network'] == network
    for t in r['turns']:  # spans hold speech only: never a label or a header line
        said = r['text'][t['start']:t['end']]
        assert said.strip() == said and not said.startswith(t['speaker'] + ':')

def test_shared_samples_speakers_and_roles(shared_data):
    "Every speaker and turn of the shared samples, exactly; roles as the ground truth has them."
    manifest = json.loads((shared_data / 'samples' / 'manifest.json').read_text())
    dev = {}
    for line in open(shared_data / 'eval_dev.jsonl', encoding='utf-8'):
        rec = json.loads(line)
        if rec['id'] in {m['id'] for m in manifest}: dev[rec['id']] = rec
    rows = {r['file'].rsplit('/', 1)[-1]: r for r in jsonl(flexxray('parse', *[shared_data / 'samples' / m['file'] for m in manifest]).stdout)}
    right = total = 0
    for m in manifest:
        r, rec = rows[m['file']], dev[m['id']]
        assert r['text'] == (shared_data / 'samples' / m['file']).read_text(encoding='utf-8')
        assert [t['speaker'] for t in r['turns']] == [t['speaker'] for t in rec['turns'] if t['text']]
        for t, want in zip(r['turns'], [t for t in rec['turns'] if t['text']]):
            assert r['text'][t['start']:t['end']].split() == want['text'].split()
        roles = {s['name']: s['role'] for s in r['speakers']}
        for label, role in m['speaker_roles'].items():
            total += 1; right += roles[label] == role
    assert right / total >= 0.95, (right, total)
