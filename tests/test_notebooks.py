"The notebooks are the source and their tests: each one runs top to bottom as a pytest case (nbdev's test runner)."
import pathlib
import pytest
import nbdev.test as nbt  # the module, not test_nb itself, or pytest collects it

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / 'nbs').glob('*.ipynb'))

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook(nb):
    ok, _ = nbt.test_nb(nb, skip_flags=['notest'], basepath=ROOT)
    assert ok, f'{nb.name} failed (its error is printed above)'
