"""Markdown never states a result: after a paper notebook's results heading, no markdown cell holds a number that its
committed quick report reproduced (the closing cell prints those, so a rerun cannot contradict the prose)."""
import json
import re
from pathlib import Path

import nbformat
import pytest

from conftest import NBS, ROOT

PAPER_NOTEBOOKS = sorted(p for p in NBS.glob("[12]*.ipynb") if 10 <= int(p.name[:2]) < 90)
RESULTS = ROOT / "reports" / "quick" / "results"
HEADING = re.compile(r"^#{1,4}\s+(Results|What matched|What the benchmark says)", re.M)
NUMBER = re.compile(r"(?<![\w.,])[-−+]?\d+\.\d+(?!\w|\.\d)")


def _numbers_of(row: dict, key: str) -> list[float]:
    value = row.get(key)
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _written(v: float) -> set[str]:
    """How prose would write `v`: with two decimals, or with one where it is 10 or more (an accuracy). Short decimals
    below 10 (0.1, 3.5) and anything below 0.1 (0.05, 0.01) are settings far more often than results: left out."""
    if abs(v) < 0.1:
        return set()
    return {f"{abs(v):.2f}"} | ({f"{abs(v):.1f}"} if abs(v) >= 10 else set())


def reproduced_numbers(record: dict) -> set[str]:
    "Every reproduced value, spread, per-seed value and interval end of a results record as prose would write it, minus the papers' numbers."
    made, paper = set(), set()
    for row in record["rows"]:
        for key in ("reproduced", "std", "values", "ci_low", "ci_high", "mde"):
            for v in _numbers_of(row, key):
                made |= _written(v)
        for v in _numbers_of(row, "paper"):
            paper |= _written(v)
    return made - paper


def stated_results(notebook: dict, record: dict) -> list[tuple[int, str]]:
    "(cell index, number) for each reproduced number in a markdown cell at or after the first results heading."
    cells, found = notebook["cells"], []
    start = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and HEADING.search(c["source"])), None)
    if start is None:
        return found
    made = reproduced_numbers(record)
    for i, cell in enumerate(cells[start:], start):
        if cell["cell_type"] == "markdown":
            found += [(i, n) for n in NUMBER.findall(cell["source"]) if n.lstrip("-−+") in made]
    return found


def test_the_checker_finds_a_reproduced_number_in_prose_and_ignores_the_papers():
    record = {"rows": [{"reproduced": 84.6021, "std": 0.37, "paper": 57.0, "values": [84.2, 85.0]}]}
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("Before: 84.60 is fine here (the method section)."),
                nbformat.v4.new_markdown_cell("## Results"),
                nbformat.v4.new_markdown_cell("Soft targets reach 84.60 ± 0.37 % (paper: 57.0), one seed 85.0.")]
    assert stated_results(nb, record) == [(2, "84.60"), (2, "0.37"), (2, "85.0")]


@pytest.mark.parametrize("notebook", PAPER_NOTEBOOKS, ids=[p.stem for p in PAPER_NOTEBOOKS])
def test_no_markdown_after_the_results_heading_states_a_reproduced_number(notebook):
    results = RESULTS / f"{notebook.stem}.json"
    if not results.exists():
        pytest.skip(f"no committed quick report for {notebook.stem}")
    nb = nbformat.read(notebook, as_version=4)
    stated = stated_results(nb, json.loads(results.read_text()))
    assert not stated, (f"{notebook.name}: markdown states this run's numbers (cell, number): {stated}; print them from "
                        f"the closing cell instead")
