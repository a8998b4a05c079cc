"""Small tools for writing and checking the book's notebooks (used by authors and tests).

Source notebooks are written from Python so they stay output-free and reviewable::

    from cellbook.nbtools import md, code, params, write_notebook
    write_notebook("notebooks/part1/01_data.ipynb", [md("# Title"), params("seed = 0"), code("...")])

Tags: ``params`` is tagged ``parameters`` (papermill); ``code(..., hide=True)`` is tagged
``remove-input`` so the book shows only its output (generated prose, provenance box).
"""
from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path

import nbformat

from .fsutil import read_json


def md(source: str):
    return nbformat.v4.new_markdown_cell(source.strip("\n"))


def code(source: str, hide: bool = False, tags: list[str] | None = None):
    cell = nbformat.v4.new_code_cell(source.strip("\n"))
    tags = list(tags or []) + (["remove-input"] if hide else [])
    if tags:
        cell.metadata["tags"] = tags
    return cell


def params(source: str):
    return code(source, tags=["parameters"])


def write_notebook(path: str | Path, cells: list) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Cell ids are derived from position so rewriting a notebook gives a stable diff.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nbformat.validate(nb)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return path


def hygiene_problems(path: str | Path) -> list[str]:
    """Problems of a source notebook: stored outputs, execution counts, no ``parameters`` cell."""
    nb = json.loads(Path(path).read_text())
    problems = []
    code_cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    if any(c.get("outputs") for c in code_cells):
        problems.append("has stored outputs")
    if any(c.get("execution_count") for c in code_cells):
        problems.append("has execution counts")
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.get("cells", [])):
        problems.append("no cell tagged 'parameters'")
    return problems


# ------------------------------------------------------------------------------------------
# One cell numbering for every message about an executed notebook.
#
# "cell N" is the 1-based position of the cell among ALL cells (markdown included) of the
# *source* notebook, i.e. what you count in Jupyter from the top of ``notebooks/<name>.ipynb``.
# The cells papermill adds to the executed copy (the ``injected-parameters`` cell and its red
# error banners) are not counted; the injected cell is called "the injected-parameters cell
# (after cell N)". ``cellbook run``'s "failed in cell N" and ``python -m cellbook.book``'s
# "cell N" both come from :func:`cell_labels`.

INJECTED_TAG = "injected-parameters"
PAPERMILL_MARKER_TAG = "papermill-error-cell-tag"


def _tags(cell) -> list:
    return (cell.get("metadata") or {}).get("tags") or []


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else (src or "")


def cell_labels(nb: dict) -> list[str]:
    """A label per cell of an executed (or source) notebook: ``"cell N"`` as documented above."""
    labels, n = [], 0
    for cell in nb.get("cells", []):
        tags = _tags(cell)
        if PAPERMILL_MARKER_TAG in tags:
            labels.append(f"papermill's error banner (after cell {n})")
        elif INJECTED_TAG in tags:
            labels.append(f"the injected-parameters cell (after cell {n})")
        else:
            n += 1
            labels.append(f"cell {n}")
    return labels


def first_line(cell) -> str:
    """The first non-blank line of a cell's source (80 characters at most)."""
    return next((ln.strip() for ln in _source(cell).splitlines() if ln.strip()), "")[:80]


def failed_cell(nb: dict) -> int | None:
    """Index (in ``nb["cells"]``) of the cell a failed run stopped in: the first cell with an error
    output or papermill's exception flag, else the last cell papermill started (a dead kernel or
    an interrupt leaves no error output), else ``None`` (the run stopped before any cell)."""
    cells = nb.get("cells", [])
    for i, c in enumerate(cells):
        if PAPERMILL_MARKER_TAG in _tags(c):
            continue
        if any(o.get("output_type") == "error" for o in c.get("outputs") or []) or \
                (c.get("metadata") or {}).get("papermill", {}).get("exception"):
            return i
    started = [i for i, c in enumerate(cells)
               if (c.get("metadata") or {}).get("papermill", {}).get("start_time")
               and PAPERMILL_MARKER_TAG not in _tags(c)]
    return started[-1] if started else None


def _runs_code(cell) -> bool:
    """Cells the kernel executes (nbclient skips blank cells and cells tagged skip-execution)."""
    return cell.get("cell_type") == "code" and bool(_source(cell).strip()) \
        and "skip-execution" not in _tags(cell)


def _cell_problem(cell) -> str | None:
    meta = (cell.get("metadata") or {}).get("papermill")
    if meta is None:
        return "not executed by papermill (no papermill metadata)"
    if meta.get("exception"):
        return "raised (papermill marked an exception)"
    status = meta.get("status")
    if status not in ("completed", None):
        return f"not completed (papermill status {status!r})"
    reasons = []
    if cell.get("execution_count") is None and _runs_code(cell):  # blank cells get no count
        reasons.append("no execution count")
    if not meta.get("end_time"):
        reasons.append("no papermill end time")
    if reasons:
        return f"never ran ({', '.join(reasons)}; papermill's status field says {status!r})"
    return None


def error_outputs(path: str | Path) -> list[str]:
    """Why an executed notebook is not a complete, clean run (empty list: it is).

    A code cell counts as run only with an execution count, papermill's end time and no
    exception: papermill marks every cell "completed" when a kernel dies, so the status field
    alone proves nothing. Error outputs are listed as ``cell N: ename: evalue``; consecutive
    cells with the same problem are grouped (``cells 6-30: never ran (...)``). Cell numbers are
    those of :func:`cell_labels`. A corrupt file is a ``ValueError`` naming it.
    """
    nb = read_json(path, "executed notebook")
    labels = cell_labels(nb)
    errs = []
    meta = (nb.get("metadata") or {}).get("papermill")
    if meta is not None and not meta.get("end_time"):
        errs.append("the papermill run never finished (no end time in the notebook's metadata)")
    groups: list[list] = []  # [problem, first label, last label], over consecutive executed code cells
    prev_ok = True
    for i, c in enumerate(nb.get("cells", [])):
        if c.get("cell_type") != "code" or PAPERMILL_MARKER_TAG in _tags(c):
            continue
        has_error = False
        for o in c.get("outputs", []) or []:
            if o.get("output_type") == "error":
                has_error = True
                errs.append(f"{labels[i]}: {o.get('ename')}: {o.get('evalue')}")
        problem = _cell_problem(c)
        if has_error and problem and problem.startswith("raised"):
            problem = None  # already listed with its error
        groupable = labels[i].startswith("cell ")
        if problem and not prev_ok and groups and groups[-1][0] == problem and groupable \
                and groups[-1][2].startswith("cell "):
            groups[-1][2] = labels[i]
        elif problem:
            groups.append([problem, labels[i], labels[i]])
        prev_ok = not problem
    for problem, first, last in groups:
        if first == last:
            errs.append(f"{first}: {problem}")
        else:
            errs.append(f"cells {first.removeprefix('cell ')}-{last.removeprefix('cell ')}: {problem}")
    return errs


def has_output_html(nb: dict, marker: str) -> bool:
    """True when some cell output's HTML contains ``marker`` (e.g. ``cellbook-provenance``)."""
    for c in nb.get("cells", []):
        for o in c.get("outputs", []) or []:
            html = (o.get("data") or {}).get("text/html")
            if html is not None and marker in ("".join(html) if isinstance(html, list) else html):
                return True
    return False


# What a reader must never see in a published chapter's outputs (issue: "nothing raw reaches the reader").
_RAW_PATTERNS = (
    ("a Python warning", re.compile(r"\b\w*Warning:")),
    ("a traceback", re.compile(r"Traceback \(most recent call last\)")),
    ("nan", re.compile(r"(?<![\w.-])(nan|NaN|NAN)(?![\w-])")),
    ("a number with more than 4 decimals", re.compile(r"(?<![\w.])\d+\.\d{5,}\b")),
    ("a local path", re.compile(r"(/tmp/|/work/|/home/|/root/|/Users/|\.venv/|site-packages)")),
)
_PROGRESS = re.compile(r"(\d+%\|.*\|)|(\r)|(\d+/\d+ \[\d\d:\d\d)")
_HIDDEN_OUTPUT_TAGS = {"remove-output", "remove-cell"}


def is_progress_bar(text: str) -> bool:
    """True for stderr text that is only progress bars (tqdm), which the staged book leaves out."""
    lines = [line for line in re.split(r"[\r\n]+", text) if line.strip()]
    return bool(lines) and all(_PROGRESS.search(line) for line in lines)


def _output_texts(output: dict):
    """``(kind, text)`` of what a reader sees of one output (HTML without its tags)."""
    kind = output.get("output_type")
    if kind == "stream":
        yield output.get("name", "stream"), "".join(output.get("text") or "")
        return
    if kind == "error":
        yield "error", f"{output.get('ename')}: {output.get('evalue')}"
        return
    data = output.get("data") or {}
    for mime in ("text/markdown", "text/html", "text/latex"):
        if mime in data:
            text = "".join(data[mime]) if isinstance(data[mime], list) else data[mime]
            if mime == "text/html":
                text = re.sub(r"<(script|style)\b.*?</\1>", " ", text, flags=re.S)
                text = html_lib.unescape(re.sub(r"<[^>]+>", " ", text))
            yield mime, text
            return
    if "text/plain" in data and not any(m.startswith("image/") for m in data):
        text = data["text/plain"]
        yield "text/plain", "".join(text) if isinstance(text, list) else text


def raw_outputs(nb: dict) -> list[str]:
    """What a published chapter shows that a reader must not see: stderr text (other than progress bars),
    a warning, a traceback, ``nan``, a number with more than 4 decimals or a local filesystem path, each
    as ``cell N: <what>: '<context>'``. Outputs of cells tagged remove-output / remove-cell are not
    published and are not checked."""
    labels = cell_labels(nb)
    problems = []
    for i, c in enumerate(nb.get("cells", [])):
        if c.get("cell_type") != "code" or _HIDDEN_OUTPUT_TAGS & set(_tags(c)):
            continue
        for o in c.get("outputs") or []:
            for kind, text in _output_texts(o):
                if kind == "stderr" and text.strip() and not is_progress_bar(text):
                    problems.append(f"{labels[i]}: stderr text: {text.strip()[:80]!r}")
                    continue
                if kind == "stderr":
                    continue
                for what, rx in _RAW_PATTERNS:
                    m = rx.search(text)
                    if m:
                        ctx = text[max(0, m.start() - 30):m.end() + 30].replace("\n", " ").strip()
                        problems.append(f"{labels[i]}: {what}: {ctx!r}")
    return problems


def strip_progress_bars(nb: dict) -> dict:
    """``nb`` without stderr outputs that are only progress bars (in place; returned)."""
    for c in nb.get("cells", []):
        if c.get("outputs"):
            c["outputs"] = [o for o in c["outputs"] if not (o.get("output_type") == "stream"
                            and o.get("name") == "stderr" and is_progress_bar("".join(o.get("text") or "")))]
    return nb
