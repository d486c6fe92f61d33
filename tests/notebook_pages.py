"""What a reader sees on a notebook's page, and whether it is still what the code prints today.

    python tests/notebook_pages.py notebooks/*.ipynb      re-execute notebooks in place (`make notebooks`)

`execute(path)` runs a notebook top to bottom on a fresh kernel, in the notebook's folder (where its helper
modules are), and returns the executed notebook; a cell that raises makes it raise, with the traceback.
`page(notebook)` is the text of every code cell's outputs as a reader sees them, and `stale_cells(saved,
fresh)` lists the cells whose saved page differs from a fresh run's. The rules of the comparison:

- what is compared: standard output, and each result or display as its markdown (a table) when it has one,
  else its plain text; a figure counts as the line "<figure>", so a figure that appears or disappears is a
  difference but its pixels are not; standard error (warnings, progress of a first matplotlib import) is not
  part of the page;
- numbers are masked: every number (sign, digits, decimal point, exponent) reads "#", and runs of spaces
  read as one. A page is stale when its words change (code that no longer exists, a claim printed by a
  check, a table's rows), not when a loss moves in its fourth digit or a BLAS build rounds differently;
- a cell tagged "exact" (its text holds no measured number: printed code with its line numbers, the
  command line's defaults) is compared with its numbers, so that a line number or a default that changed
  makes its page stale too;
- a cell tagged "text-varies" (its text names which outputs a trained model got right, which another
  machine's rounding can change) is compared by its outputs' kinds only;
- a cell tagged "needs-torch" is compared only where torch is installed (without it, it says it skipped).
"""
import difflib
import importlib.util
import os
import re
import sys

import nbformat
from nbclient import NotebookClient

CELL_TIMEOUT = 900          # seconds per cell: generous, the machine may be shared
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def execute(path):
    """The notebook at `path`, executed on a fresh kernel in its own folder."""
    nb = nbformat.read(path, as_version=4)
    folder = os.path.dirname(os.path.abspath(path))
    NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": folder}}).execute()
    return nb


def mask(text, numbers=True):
    """`text` with every number replaced by "#" (unless `numbers` is False) and every run of spaces or tabs by
    one space, line by line."""
    lines = (re.sub(r"[ \t]+", " ", NUMBER.sub("#", line) if numbers else line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def cell_page(cell):
    """[(kind, text), ...]: a code cell's outputs as a reader sees them, consecutive standard output joined."""
    items = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            if out["name"] != "stdout":
                continue
            kind, text = "stdout", out["text"]
        elif out["output_type"] in ("execute_result", "display_data"):
            data = out["data"]
            if "image/png" in data or "image/svg+xml" in data:
                kind, text = "figure", "<figure>"
            elif "text/markdown" in data:
                kind, text = "markdown", data["text/markdown"]
            else:
                kind, text = "text", data.get("text/plain", "")
        else:                                        # an error: a fresh run raises before it gets here
            kind, text = "error", f"{out.get('ename')}: {out.get('evalue')}"
        if kind == "stdout" and items and items[-1][0] == "stdout":
            items[-1] = ("stdout", items[-1][1] + text)
        else:
            items.append((kind, text))
    return items


def page(nb):
    """[(cell index, tags, [(kind, masked text), ...]), ...] for every code cell of notebook `nb`."""
    pages = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            tags = set(cell.get("metadata", {}).get("tags", []))
            pages.append((i, tags, [(k, mask(t, numbers="exact" not in tags)) for k, t in cell_page(cell)]))
    return pages


def stale_cells(saved, fresh, torch_installed=None):
    """A readable description of every code cell whose saved page differs from the fresh run's ([] if none)."""
    if torch_installed is None:
        torch_installed = importlib.util.find_spec("torch") is not None
    old, new = page(saved), page(fresh)
    if [i for i, _, _ in old] != [i for i, _, _ in new]:
        return ["the saved notebook and the fresh run have different cells"]
    problems = []
    for (i, tags, before), (_, _, after) in zip(old, new):
        if "needs-torch" in tags and not torch_installed:
            continue
        if "text-varies" in tags:
            before, after = [k for k, _ in before], [k for k, _ in after]
        if before != after:
            first_line = (saved.cells[i].source.splitlines() or ["(empty)"])[0][:60]
            diff = difflib.unified_diff(_lines(before), _lines(after), "saved", "fresh run", lineterm="", n=1)
            problems.append(f"cell {i} ({first_line}):\n" + "\n".join(diff))
    return problems


def _lines(items):
    return [line for item in items for line in (item.splitlines() if isinstance(item, str)
                                                 else [f"[{item[0]}]"] + item[1].splitlines())]


def main(paths):
    for path in paths:
        print(f"executing {path}", flush=True)
        nbformat.write(execute(path), path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
