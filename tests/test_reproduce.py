import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from kd_repro import core
from kd_repro.reproduce import README_END, README_START, main, reproduce


def _notebook(path: Path, body: str):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "quick"\nseed = 0\nout_dir = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


SAVE = ("from kd_repro.core import save_results, result_row\n"
        "from kd_repro.stats import decide, verdict_rows\n"
        "save_results('{name}', [result_row('Table 1', 'teacher', 91.5, 98.91)]\n"
        "             + verdict_rows([decide([1.0, 2.0, 1.5], 'the method beats its baseline', headline=True)]),\n"
        "             profile=profile, out_dir=out_dir)")


@pytest.fixture
def tiny_nbs(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "10_good.ipynb", SAVE.format(name="10_good"))
    _notebook(nbs / "11_bad.ipynb", "x = 1\nraise ValueError('deliberate failure')")
    _notebook(nbs / "12_after.ipynb", SAVE.format(name="12_after"))
    return nbs


def test_failing_notebook_is_named_and_others_still_written(tiny_nbs, tmp_path):
    lines = []
    status = reproduce("smoke", out=tmp_path / "reports", nbs_dir=tiny_nbs,
                       log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    assert status == 1
    out = tmp_path / "reports" / "smoke"
    assert (out / "results" / "10_good.json").exists() and (out / "results" / "12_after.json").exists()
    error = [l for l in lines if l.startswith("error:")]
    assert error and "11_bad" in error[0] and "cell" in error[0] and "deliberate failure" in error[0]
    md = (out / "RESULTS.md").read_text()
    assert "| teacher | accuracy_% | 98.91 | 91.50 | -7.41 |" in md
    assert "11_bad | FAILED" in md
    assert (out / "11_bad.ipynb").exists()  # the executed copy with the traceback


def test_only_runs_the_named_notebook_and_refreshes_readme(tiny_nbs, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{README_START}\nold\n{README_END}\n")
    assert reproduce("smoke", only="good", out=tmp_path / "r", nbs_dir=tiny_nbs, readme=readme,
                     log=lambda *a, **k: None) == 0
    assert [p.name for p in (tmp_path / "r" / "smoke" / "results").iterdir()] == ["10_good.json"]
    text = readme.read_text()
    assert "\nold\n" not in text and "the method beats its baseline | **holds**: 1.50 [" in text and text.startswith("# x\n")
    assert "reports/smoke/RESULTS.md" in text


def test_the_cli_starts_kernels_without_a_network_port_or_its_warning(tiny_nbs, tmp_path):
    "Kernels talk to kd_repro over Unix sockets: no port is opened, so ipykernel prints no transport warning."
    from kd_repro.reproduce import local_kernel_manager
    first, second = local_kernel_manager()(), local_kernel_manager()()
    assert first.transport == ("ipc" if os.name == "posix" else "tcp")
    assert first.ip != second.ip or first.transport == "tcp"  # kernels side by side (--jobs, torchrun) share no socket
    cli = Path(sys.executable).parent / "kd_repro"
    done = subprocess.run([str(cli), "reproduce", "--profile", "smoke", "--only", "good", "--nbs", str(tiny_nbs),
                           "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "10_good ok" in done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr, done.stderr


def test_results_md_from_saved_json(tmp_path):
    core.save_results("13_dafl", [core.result_row("Table 1", "DAFL", 97.0, 98.2, std=0.3)],
                      profile="quick", out_dir=tmp_path / "quick", title="DAFL")
    from kd_repro.reproduce import results_markdown
    md = results_markdown(tmp_path / "quick", "quick")
    assert "## 13_dafl — DAFL" in md and "97.00 ± 0.30" in md and "-1.20" in md


def test_cli_unknown_profile_is_one_line_error():
    cli = Path(sys.executable).parent / "kd_repro"
    proc = subprocess.run([str(cli), "reproduce", "--profile", "nope"], capture_output=True, text=True)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "smoke, quick, paper" in err[0]


def test_cli_help_lists_commands():
    cli = Path(sys.executable).parent / "kd_repro"
    proc = subprocess.run([str(cli), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "reproduce" in proc.stdout and "profiles" in proc.stdout


def test_report_notebooks_keep_one_summary_line_per_training_run(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "10_bars.ipynb", "from kd_repro.train import progress\n"
                                     "for step in (bar := progress(range(500), 'teacher demo')):\n"
                                     "    bar.set_postfix(loss=0.25)")
    assert reproduce("smoke", out=tmp_path / "r", nbs_dir=nbs, log=lambda *a, **k: None) == 0
    cells = nbformat.read(tmp_path / "r" / "smoke" / "10_bars.ipynb", as_version=4).cells
    text = "".join(o.get("text", "") for o in cells[-1].outputs)
    assert text.startswith("teacher demo: 500/500 in ") and text.strip().endswith("(loss=0.25)"), text
    assert len(text.strip().splitlines()) == 1 and "it/s" not in text


def _under_torchrun(*args, processes=2):
    "`kd_repro reproduce ARGS` started by torchrun as `processes` ranks on this CPU (gloo)."
    cli = Path(sys.executable).parent / "kd_repro"
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                           str(cli), "reproduce", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "KD_REPRO_PROGRESS": "0"})


def test_under_torchrun_every_rank_runs_each_notebook_and_rank_zero_reports_every_failure(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "10_ranks.ipynb", "import torch\n"
                                      "from kd_repro.core import result_row, save_results\n"
                                      "from kd_repro.train import from_rank_zero, over_ranks\n"
                                      "drawn = torch.rand(1).item()  # unseeded\n"
                                      "alike = over_ranks([float(from_rank_zero(drawn) == drawn)], 'sum')[0]\n"
                                      "save_results('10_ranks', [result_row('Table 1', 'ranks that ran it', "
                                      "over_ranks([1.0], 'sum')[0], None), result_row('Table 1', 'ranks that drew "
                                      "rank 0 number', alike, None)], profile=profile, out_dir=out_dir)")
    _notebook(nbs / "11_rank_one_fails.ipynb", "import os\nassert os.environ['RANK'] == '0', 'rank 1 fails on purpose'")
    done = _under_torchrun("--profile", "smoke", "--nbs", str(nbs), "--out", str(tmp_path / "reports"))
    assert done.returncode != 0, done.stdout[-2000:]
    out = tmp_path / "reports" / "smoke"
    record = json.loads((out / "results" / "10_ranks.json").read_text())
    assert record["processes"] == 2 and record["rows"][0]["reproduced"] == 2.0  # both kernels joined one group
    assert record["rows"][1]["reproduced"] == 2.0  # and continued from rank 0's random state
    first = nbformat.read(out / "10_ranks.ipynb", as_version=4).cells[0]
    assert first.metadata.tags == ["injected-ranks"] and "join_ranks('smoke/0/10_ranks')" in first.source
    assert "× 2 processes" in (out / "RESULTS.md").read_text()
    assert "11_rank_one_fails failed on rank 1" in done.stdout and "rank 1 fails on purpose" in done.stdout
    assert "failed on rank 0" not in done.stdout
    kept = re.search(r"executed copy: (\S+)\)", done.stdout.split("failed on rank 1")[1]).group(1)
    assert Path(kept).exists() and not Path(kept).is_relative_to(out)  # rank 1's copy, outside the report


def test_a_paper_notebook_passes_its_own_checks_under_torchrun(tmp_path):
    done = _under_torchrun("--profile", "smoke", "--only", "train", "--out", str(tmp_path / "reports"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((tmp_path / "reports" / "smoke" / "results" / "03_train.json").read_text())
    assert record["processes"] == 2
