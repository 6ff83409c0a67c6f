"""The house rules, checked: short exported cells, notebooks that show their work, a package whose every module
the toolkit itself uses, documents that name no path outside the repo, and no Dask for a plain install."""
import json, pathlib, re, tomllib
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / 'nbs').glob('*.ipynb'))
MODULES = sorted(p.stem for p in (ROOT / 'flexxray_nb').glob('[a-z]*.py'))

def cells(nb): return json.loads(nb.read_text())['cells']

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_exported_cells_are_short_and_the_notebook_shows_output(nb):
    long = [c.get('id') for c in cells(nb) if ''.join(c['source']).startswith('#| export')
            and len(''.join(c['source']).splitlines()) - 1 > 40]
    assert not long, f'{nb.name}: exported cells over 40 lines: {long}'
    assert any(c.get('outputs') for c in cells(nb)), f'{nb.name} shows no output'

def test_every_module_is_used_by_the_toolkit_itself():
    "A module only tests or benchmarks import belongs with them, not in the package."
    users = {p: p.read_text() for p in (ROOT / 'flexxray_nb').rglob('*') if p.suffix in ('.py', '.ipynb') and p.name != '_modidx.py'}
    entry = set(re.findall(r'flexxray_nb\.(\w+):', (ROOT / 'pyproject.toml').read_text()))
    for m in MODULES:
        used = [p.name for p, s in users.items() if p != ROOT / 'flexxray_nb' / f'{m}.py' and re.search(rf'(?:flexxray_nb)?\.{m}\b|from (?:flexxray_nb|\.) import [\w, ]*\b{m}\b', s)]
        assert used or m in entry, f'flexxray_nb/{m}.py is imported by no other part of the package'

def test_documents_name_no_path_outside_the_repo():
    docs = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md')), *NOTEBOOKS]
    for p in docs:
        text = p.read_text() if p.suffix == '.md' else '\n'.join(''.join(c['source']) for c in cells(p))
        assert not re.search(r'\.\./shared|/work/', text), f'{p.name} names a path outside the repo'

def test_a_plain_install_pulls_no_dask():
    project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
    names = [re.match(r'[A-Za-z0-9_.-]+', d)[0].lower() for d in project['dependencies']]
    assert not {'dask', 'distributed'} & set(names)
    assert all(re.search(r'>=[\d.]+,<\d', d) for d in project['dependencies']), 'runtime requirements are compatible ranges'
