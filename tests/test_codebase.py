"""The package's shape: small modules, top-level imports, layers without cycles, documented names that resolve.

These are the rules CONTRIBUTING.md states; each test names the file and line that breaks one.
"""
from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cellbook"
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 60
# Optional or heavy third-party dependencies that a function may import when it needs them.
LAZY_THIRD_PARTY = {"celltypist", "lightgbm", "leidenalg", "igraph", "louvain", "umap", "torch", "tqdm", "IPython",
                    "matplotlib", "pandas", "scanpy", "anndata", "sklearn", "scipy", "cv2", "fcntl", "base64",
                    "html", "inspect", "hashlib", "datetime", "warnings", "subprocess", "dask", "distributed",
                    "networkx", "seaborn", "selenium", "pyreadr", "h5py", "pyarrow", "jupyter_book", "papermill"}
# The layers, lowest first: a module may import only from its own layer or below.
LAYERS = [
    {"cellbook", "cellbook.fsutil", "cellbook.config", "cellbook.layout", "cellbook.project", "cellbook.validation"},
    {"cellbook.results", "cellbook.report", "cellbook.splits", "cellbook.metrics", "cellbook.enrichment",
     "cellbook.datasets", "cellbook.preprocess", "cellbook.models", "cellbook.parallel"},
    {"cellbook.train"},
    {"cellbook.baselines", "cellbook.annotation", "cellbook.models.vision"},
    {"cellbook.comparison", "cellbook.sweeps", "cellbook.scaling"},
    {"cellbook.plots", "cellbook.claims", "cellbook.nbtools", "cellbook.chapter", "cellbook.book",
     "cellbook.sphinx_ext"},
    {"cellbook.runner", "cellbook.cli"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _layer(module: str) -> int:
    best = None
    for i, group in enumerate(LAYERS):
        for prefix in group:
            if module == prefix or (prefix != "cellbook" and module.startswith(prefix + ".")):
                if best is None or len(prefix) > best[1]:
                    best = (i, len(prefix))
    assert best is not None, f"{module} is in no layer of tests/test_codebase.py: add it to LAYERS"
    return best[0]


def _target(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path):
    """``(line, target module, at module top?)`` for every import of a cellbook module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _target(module, node, path.name == "__init__.py")
            if target.split(".")[0] != "cellbook":
                continue
            for alias in node.names:  # `from . import x` imports the submodule x when there is one
                sub = f"{target}.{alias.name}"
                yield node.lineno, (sub if sub in MODULES else target), id(node) in top
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "cellbook":
                    yield node.lineno, alias.name, id(node) in top


def test_no_file_or_function_too_long():
    problems = []
    for path in MODULES.values():
        text = path.read_text(encoding="utf-8")
        n = len(text.splitlines())
        if n > MAX_FILE_LINES:
            problems.append(f"{path.relative_to(ROOT)}: {n} lines (at most {MAX_FILE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} is {length} lines "
                                    f"(at most {MAX_FUNCTION_LINES})")
    assert not problems, "\n".join(problems)


def test_cellbook_imports_sit_at_module_top():
    """Only the command line imports a sub-command's implementation when it runs (keeps `cellbook --help` light)."""
    problems = [f"{path.relative_to(ROOT)}:{line}: imports {target} inside a function"
                for module, path in MODULES.items() if module != "cellbook.cli"
                for line, target, at_top in _imports(module, path) if not at_top]
    assert not problems, "\n".join(problems)


def test_no_module_imports_the_package_root():
    """The root is lazy (PEP 562); a module importing it would hide its real dependencies."""
    problems = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and module != "cellbook":
                target = _target(module, node, path.name == "__init__.py")
                names = {a.name for a in node.names}
                if target == "cellbook" and not names <= {"__version__"} | {m.split(".")[1] for m in MODULES
                                                                            if m.count(".") == 1}:
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: from cellbook import {names}")
            if isinstance(node, ast.Import) and any(a.name == "cellbook" for a in node.names):
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: import cellbook")
    assert not problems, "\n".join(problems)


def test_layers_and_no_cycles():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    problems = []
    for module, path in MODULES.items():
        for line, target, _ in _imports(module, path):
            if target not in MODULES or target == module or target == "cellbook":
                continue
            graph[module].add(target)
            if _layer(target) > _layer(module) and not target.startswith(module + "."):
                problems.append(f"{path.relative_to(ROOT)}:{line}: {module} (layer {_layer(module)}) imports "
                                f"{target} (layer {_layer(target)})")
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                problems.append("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not problems, "\n".join(problems)


HISTORY = re.compile(r"\b[Ii]ssues? #?\d+|\(#\d+\)|\b\d+(\.\d+)? ?(s|ms|seconds|minutes) (with|on|per|for) ")


def test_docstrings_say_what_not_when():
    """No issue numbers and no timings in docstrings: timings live in benchmarks/, history in git."""
    problems = []
    for path in MODULES.values():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node) or ""
                for m in HISTORY.finditer(doc):
                    problems.append(f"{path.relative_to(ROOT)}: {getattr(node, 'name', 'module')}: {m.group(0)!r}")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------ documented names

DOTTED = re.compile(r"(?<![\w/.-])(cellbook|cb)((?:\.[A-Za-z_]\w*)+)")


def _documented_text() -> dict[str, str]:
    texts = {p.name: p.read_text(encoding="utf-8") for p in [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]}
    texts.update({f"book/{p.name}": p.read_text(encoding="utf-8") for p in sorted((ROOT / "book").glob("*.md"))})
    for nb in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        texts[str(nb.relative_to(ROOT))] = "\n".join("".join(c["source"]) for c in cells)
    for path in MODULES.values():   # docstrings and messages: every string constant of the package
        tree = ast.parse(path.read_text(encoding="utf-8"))
        texts[str(path.relative_to(ROOT))] = "\n".join(
            n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str))
    return texts


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _candidates(dotted: str) -> list[str]:
    """A documented name and its shorter prefixes (a trailing word may be prose: ``cellbook.metrics.summarize``)."""
    parts = dotted.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 1, -1)]


def test_every_documented_dotted_name_resolves():
    """``cellbook.x.y`` (or ``cb.x.y``) in README.md, CONTRIBUTING.md, book/*.md, the notebooks and the package's
    own docstrings and messages names something that exists."""
    problems = []
    for where, text in _documented_text().items():
        for m in DOTTED.finditer(text):
            dotted = "cellbook" + m.group(2)
            if dotted.endswith((".py", ".json", ".yml", ".yaml", ".md", ".ipynb", ".tsv", ".cbm", ".h5ad")):
                continue
            tail = text[m.end():m.end() + 1]
            if tail == "(" or tail == "`" or dotted.count(".") == 1:
                ok = _resolves(dotted)       # a call, a code span, or one level: the whole name must exist
            else:
                ok = _resolves(dotted) or _resolves(_candidates(dotted)[-1]) and dotted.count(".") > 2
            if not ok:
                problems.append(f"{where}: {dotted}")
    assert not problems, "names that do not resolve:\n" + "\n".join(sorted(set(problems)))


def test_import_is_light():
    """``import cellbook`` loads none of torch, scanpy, sklearn, papermill (they load on first use)."""
    code = ("import sys, cellbook; heavy = [m for m in ('torch', 'scanpy', 'sklearn', 'papermill', 'anndata') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize("name", ["annotate", "save_model", "load_model", "CellTypeClassifier", "Trainer",
                                  "open_chapter", "Recorder", "map_tasks", "seed_everything"])
def test_public_names_resolve_from_the_root(name):
    import cellbook

    assert callable(getattr(cellbook, name))
    assert name in dir(cellbook)


def test_notebook_parameters_agree_with_papermill():
    """``cellbook list`` reads parameters cells without papermill; papermill's reading is the reference."""
    import papermill

    from cellbook import layout

    roots = [ROOT, *sorted(p.parent.parent for p in (ROOT / "tests" / "fixtures").glob("*/notebooks/*/"))]
    checked = 0
    for root in dict.fromkeys(roots):
        for name in layout.list_notebooks(root):
            path = layout.notebook_dir(root) / f"{name}.ipynb"
            expected = {k: v["default"] for k, v in papermill.inspect_notebook(str(path)).items()}
            assert layout.notebook_parameters(name, root) == expected, name
            checked += 1
    assert checked >= 18


def test_tqdm_auto_is_not_imported_at_module_top():
    """tqdm.auto warns when imported in a headless kernel (no ipywidgets). open_chapter imports it under a
    warnings filter; a module importing it at its top would put that warning on a page before the filter."""
    problems = []
    for path in MODULES.values():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if any(n.startswith("tqdm.auto") or n.startswith("tqdm.autonotebook") for n in names):
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports {names[0]} at module top")
    assert not problems, "\n".join(problems)


def test_optional_dependencies_load_only_when_used():
    """Parts II and III never need CellTypist, LightGBM or Leiden clustering (the GPU pack leaves them out):
    opening a chapter and importing every public name must not import them."""
    code = ("import sys, cellbook as cb\n"
            "from cellbook import chapter, comparison, sweeps, cli, runner\n"
            "[getattr(cb, n) for n in cb.__all__]\n"
            "print([m for m in ('celltypist', 'lightgbm', 'igraph', 'leidenalg') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
