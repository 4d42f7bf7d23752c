"The package is generated from the notebooks: exporting nbs/ again must give kd_repro/ exactly."
import filecmp
import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import NBS, ROOT


def _tool(name):
    return str(Path(sys.executable).parent / name)


def test_export_in_sync(tmp_path):
    shutil.copy(ROOT / "settings.ini", tmp_path)
    shutil.copytree(NBS, tmp_path / "nbs")
    subprocess.run([_tool("nbdev_export")], cwd=tmp_path, check=True, capture_output=True)
    fresh, committed = tmp_path / "kd_repro", ROOT / "kd_repro"
    fresh_files = sorted(p.relative_to(fresh) for p in fresh.rglob("*.py"))
    committed_files = sorted(p.relative_to(committed) for p in committed.rglob("*.py"))
    assert fresh_files == committed_files, (
        f"kd_repro/ holds {committed_files} but nbs/ exports {fresh_files}: run nbdev_export (make export)")
    differ = [str(p) for p in fresh_files if not filecmp.cmp(fresh / p, committed / p, shallow=False)]
    assert not differ, f"kd_repro/{differ} differ from what nbs/ exports: run nbdev_export (make export)"


def test_notebooks_have_no_outputs():
    dirty = []
    for nb in sorted(NBS.glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        for i, cell in enumerate(cells):
            if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
                dirty.append(f"{nb.name} cell {i}")
    assert not dirty, f"notebooks in nbs/ carry outputs ({dirty[:5]}): run nbdev_clean (make export)"


def test_notebooks_are_clean(tmp_path):
    "nbdev_clean leaves nbs/ unchanged (metadata, ids), so diffs stay readable."
    shutil.copy(ROOT / "settings.ini", tmp_path)
    shutil.copytree(NBS, tmp_path / "nbs")
    subprocess.run([_tool("nbdev_clean")], cwd=tmp_path, check=True, capture_output=True)
    changed = [nb.name for nb in sorted(NBS.glob("*.ipynb"))
               if (tmp_path / "nbs" / nb.name).read_bytes() != nb.read_bytes()]
    assert not changed, f"{changed} are not cleaned: run nbdev_clean (make export)"


def test_parameters_cell_keeps_its_tag():
    "papermill needs the `parameters` tag; nbdev_clean keeps it only with allowed_cell_metadata_keys = tags."
    for nb in sorted(NBS.glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{nb.name} needs exactly one cell tagged `parameters`"
        assert "profile" in "".join(tagged[0]["source"]), f"{nb.name}'s parameters cell must set `profile`"
