"""Evidence on a company nobody tuned the toolkit to: Northwind Cold Chain (tests/data/northwind_cold_chain, fictional
calls in several layouts, questions written without synonyms, ground truth in truth.json). Precision and recall
figures are in benchmarks/eval_evidence.py; here, the behaviour: verdicts, reasons, verbatim quotes, and what a run
writes when there is nothing to find."""
import json, pathlib
import pytest
from conftest import ROOT, flexxray, jsonl
from flexxray_nb.companies import read_company
from flexxray_nb.quotes import load_corpus
from flexxray_nb.evidence import Postings, question_evidence

NORTHWIND = ROOT / 'tests' / 'data' / 'northwind_cold_chain'
TRUTH = json.loads((NORTHWIND / 'truth.json').read_text())

@pytest.fixture(scope='module')
def northwind():
    c = read_company(NORTHWIND / 'company.toml')
    trs, qs = load_corpus(c.transcript_dir())
    return c, trs, qs, Postings(qs)

def test_truth_is_verbatim(northwind):
    "The dev set itself: every answer passage is an exact span of its call."
    _, trs, _, _ = northwind
    text = {pathlib.Path(t.file).name: t.text for t in trs}
    for q in TRUTH['questions'].values():
        for a in q['answers']: assert a['text'] in text[a['file']], a

def test_verdicts_without_synonyms(northwind):
    "Every discussed question is found, the one nobody discusses is not, and its reason names the missing words."
    c, _, qs, pm = northwind
    for q in c.questions:
        ev = question_evidence(q, qs, 50, subject=[c.name], postings=pm)
        assert ev.found == TRUTH['questions'][q.id]['discussed'], (q.id, ev.reason)
        if not ev.found: assert ev.quotes == [] and 'GDP' in ev.reason and 'mentions' in ev.reason, ev.reason

def test_named_market_in_other_words(northwind):
    "The Canadian expansion is found, with quotes from a call that says Mississauga, not Canada."
    c, trs, qs, pm = northwind
    q = next(q for q in c.questions if q.id == 'canada_expansion')
    ev = question_evidence(q, qs, 50, subject=[c.name], postings=pm)
    assert ev.found and any('Mississauga' in x.text and 'Canad' not in x.text for x in ev.quotes)

def test_run_says_not_discussed(tmp_path):
    "`flexxray run` on the new company: results.json marks the undiscussed question none, with a reason and no quotes."
    flexxray('run', '--company', 'Northwind Cold Chain', '--out', tmp_path,
             env={'FLEXXRAY_COMPANIES': str(NORTHWIND), 'CACHE_DIR': str(tmp_path / 'cache')})
    res = json.loads((tmp_path / 'Northwind Cold Chain' / 'results.json').read_text())
    by_id = {q['id']: q for q in res['questions']}
    none = by_id['eu_gdp_exposure']
    assert (none['evidence'], none['quotes'], none['answer_by']) == ('none', [], 'quotes')
    assert none['answer'].startswith('Not discussed') and none['reason']
    for q in res['questions']:
        if TRUTH['questions'][q['id']]['discussed']: assert q['evidence'] == 'found' and q['quotes'], q['id']
    text = {pathlib.Path(r['file']).name: r['text'] for r in jsonl(flexxray('parse', NORTHWIND / 'transcripts').stdout)}
    for q in res['questions']:
        for x in q['quotes']: assert text[pathlib.Path(x['file']).name][x['start']:x['end']] == x['text']

def test_ask_none_is_one_object():
    "`flexxray ask`: a question nobody discusses is one object with evidence 'none' and a reason; the others are quotes."
    out = flexxray('ask', '-q', 'How is the Canadian expansion performing?', '-q', 'What is the exposure to EU GDP guidelines?',
                   '--top-k', '3', NORTHWIND / 'transcripts').stdout
    rows = jsonl(out)
    found = [r for r in rows if r['question'].startswith('How is')]
    none = [r for r in rows if r['question'].startswith('What is')]
    assert len(found) == 3 and all(r['evidence'] == 'found' for r in found)
    assert len(none) == 1 and none[0]['evidence'] == 'none' and none[0]['reason'] and 'text' not in none[0]

def test_run_with_nothing_readable(tmp_path):
    "A folder where no file can be read: the run still writes its report, every question says why, exit code 1."
    folder = tmp_path / 'calls'; folder.mkdir()
    (folder / 'empty.txt').write_text('')
    (folder / 'broken.docx').write_bytes(b'not a zip')
    res = flexxray('run', '--company', 'FlexXray', '--transcripts', folder, '--out', tmp_path / 'out',
                   env={'CACHE_DIR': str(tmp_path / 'cache')}, check=False)
    assert res.returncode == 1, res.stderr[-2000:]
    out = tmp_path / 'out' / 'FlexXray'
    results = json.loads((out / 'results.json').read_text())
    assert {t['status'] for t in results['transcripts']} == {'error'}
    assert all(q['evidence'] == 'none' and q['reason'] for q in results['questions'])
    assert (out / 'report.html').is_file() and (out / 'analysis.xlsx').is_file()

def test_run_with_no_expert_speech(tmp_path):
    "Calls where nobody is an expert (an interviewer alone): no crash, every question not discussed."
    folder = tmp_path / 'calls'; folder.mkdir()
    (folder / 'monologue.txt').write_text('Interviewer: Can you hear me? Hello? Are you there?\n\nInterviewer: I will try again later.\n')
    flexxray('run', '--company', 'FlexXray', '--transcripts', folder, '--out', tmp_path / 'out',
             env={'CACHE_DIR': str(tmp_path / 'cache')})
    results = json.loads((tmp_path / 'out' / 'FlexXray' / 'results.json').read_text())
    assert all(q['evidence'] == 'none' for q in results['questions'])

def test_missing_folder_is_one_line(tmp_path):
    res = flexxray('run', '--company', 'FlexXray', '--transcripts', tmp_path / 'nope', '--out', tmp_path, check=False)
    assert res.returncode == 2 and 'Traceback' not in res.stderr
    assert len([l for l in res.stderr.splitlines() if l.strip()]) == 1, res.stderr
