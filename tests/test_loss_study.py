"""The committed loss study (docs/loss_study): its report regenerates from its run folders,
and the "Which loss?" table of docs/compare_losses.md is that report's numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ganlab.report import build_report, format_stat

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "docs" / "loss_study"
GROUP_BY = "recipe,loss"  # README and docs/loss_study/README.md give this command
# The docs table's columns after recipe and loss, and the report's metric behind each
TABLE_COLUMNS = ("fid", "kid", "precision", "recall", "classes_covered")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory):
    return build_report(STUDY, tmp_path_factory.mktemp("loss_study"), GROUP_BY)


def test_the_committed_study_regenerates_its_report(regenerated):
    """One command (python -m ganlab.report docs/loss_study --group-by recipe,loss) gives the
    committed numbers: every loss x both recipes x three seeds, none missing."""
    assert len(regenerated.rows) == 16
    assert all(len(row.runs) == 3 for row in regenerated.rows)
    for name in ("report.csv", "significance.csv", "ranks.csv"):
        written = regenerated.csv.parent / name
        assert written.read_text() == (STUDY / name).read_text(), name


def _docs_rows() -> list[list[str]]:
    text = (REPO / "docs" / "compare_losses.md").read_text()
    block = text.split("<!-- loss-study table -->")[1].lstrip("\n")
    lines = []
    for line in block.splitlines():  # the table right after the marker, to its first non-row
        if not line.startswith("|"):
            break
        lines.append(line)
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_the_docs_table_is_the_reports(regenerated):
    rows = {row.group: row for row in regenerated.rows}
    table = _docs_rows()
    assert len(table) == len(rows)
    for recipe, loss, *cells, failed in table:
        row = rows[f"{recipe}, {re.sub(r'[*`]', '', loss)}"]
        expected = [format_stat(row.stats[metric]) for metric in TABLE_COLUMNS]
        assert [re.sub(r"\*", "", c) for c in cells] == expected, (recipe, loss)
        assert int(failed) == len(row.failed), (recipe, loss)
