"""docs/lecture.ipynb runs in a real Jupyter kernel (nbclient, ipykernel: the ``test``
extra) without an error in any cell, shows the lecture's numbers, and is kept in the
repository without outputs (so its diffs stay small)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "lecture.ipynb"


def text_of(cell: nbformat.NotebookNode) -> str:
    """A code cell's printed and displayed text."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream" and output.name == "stdout":
            parts.append(output.text)
        elif "data" in output:
            parts.append(output.data.get("text/plain", ""))
    return "".join(parts)


def test_the_notebook_is_kept_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_the_lecture_notebook_runs_in_a_jupyter_kernel(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # a cell that raises fails execute() with CellExecutionError, naming the cell
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "\n".join(text_of(cell) for cell in notebook.cells if cell.cell_type == "code")
    for expected in ("(32·32·3)·100 + 100 = 307,300", "(5·5·3)·10 + 10 = 760",
                     "(7 − 3 + 2·0)/2 + 1 = 3", "2.33 is not whole",
                     "pad=2: 32x32x3 → 32x32x10", "55x55x96", "test split: accuracy"):
        assert expected in printed, expected
    images = sum("image/png" in output.get("data", {}) for cell in notebook.cells
                 for output in cell.get("outputs", []))
    assert images == 6  # convolution figure, activations, curves, confusion, filters, maps
