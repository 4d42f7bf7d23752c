"Every numbered notebook runs end to end in the smoke profile (one test each)."
import pytest

from conftest import NBS
from kd_repro.reproduce import list_notebooks, run_notebook

NOTEBOOKS = list_notebooks(NBS)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_in_smoke_profile(notebook, smoke_out):
    run = run_notebook(notebook, "smoke", smoke_out)
    assert run.ok, f"{notebook.name} failed in cell {run.cell}: {run.error} (executed copy: {run.output})"
