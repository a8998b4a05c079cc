"""The book's own pages (``book/*.md``) and the README cannot go stale.

Fast, executes no notebook:

* every shell command in a code block of ``book/*.md`` and ``README.md`` (and every inline command
  that starts with ``cellbook``, ``make``, ``.venv/bin/python`` or ``bash``) is checked:
  ``cellbook ...`` against the real command line (``cellbook.cli.build_parser``: argparse must
  accept it; notebook names as ``cellbook list`` knows them; ``-p key=value`` names a parameter of
  the target notebooks' ``parameters`` cell, of the right type; profiles and dataset names exist),
  ``make TARGET VAR=value`` against the Makefile, ``python``/``bash`` scripts against the files,
  ``papermill`` against the notebook and its parameters. A command the checker does not know is an
  error too, so nothing goes unchecked. Each message names the page, the line and the command;
* repository files a page names (``cellbook/profiles.yaml``, ``binder/``) exist;
* ``{include}`` directives point at a file and markers that exist (the set-up commands live in the
  README only);
* no internal references (``.gpu/run``, ``REFERENCE.md``), no fill-in placeholders such as
  ``/path/to/data``, and Colab / Binder are described on the *Reproduce it* page only;
* the home page links the parts, the summary, the reproduce and workshop pages, and types no
  numbers. (The exercise solutions' expected numbers are checked in ``tests/test_exercises.py``.)
"""
from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from cellbook import cli, layout, runner

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted((REPO / "book").glob("*.md")) + [REPO / "README.md"]
TEACHING = ["workshop.md", "exercises_part1.md", "exercises_part2.md", "exercises_part3.md"]

# --------------------------------------------------------------------------------------------
# extracting commands

SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh"}   # a block without a language: its command lines only
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*(.*?)\s*$")
CELLBOOK = {"cellbook", ".venv/bin/cellbook"}
PYTHON = {"python", "python3", ".venv/bin/python", ".venv/bin/python3"}
MAKE = {"make"}
SCRIPT_RUNNERS = {"bash", "sh"}
PAPERMILL = {"papermill", ".venv/bin/papermill"}
PYTEST = {"pytest", ".venv/bin/pytest"}
# programs of other projects that a page may show; they are not this project's to check
EXTERNAL = {"cd", "git", "pip", "conda", "dask", "dask-cuda-worker", "open", "xdg-open"}
# an inline `code span` is taken as a command only when it starts with one of these
INLINE_PROGRAMS = CELLBOOK | MAKE | PAPERMILL | {".venv/bin/python", "bash"}
CHECKED = CELLBOOK | PYTHON | MAKE | SCRIPT_RUNNERS | PAPERMILL | PYTEST
OPERATORS = {"&&", "||", ";", "|", "&"}
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")     # NAME, PART, HOST: the reader fills them in


def code_blocks(text: str) -> list[tuple[int, str, str]]:
    """``(first line number, language, body)`` of every fenced block (directive bodies included:
    an ``{admonition}`` holds markdown; the directive itself is returned with its ``{name}``)."""
    lines = text.splitlines()
    out, stack, i = [], [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.groups()
        if not info and stack and stack[-1][0] == fence[0] and len(fence) >= stack[-1][1]:
            stack.pop()                                    # the end of a directive
            i += 1
            continue
        lang = info.split()[0] if info else ""
        if lang.startswith("{") and lang.rstrip("}").strip("{") in {"admonition", "note", "tip", "warning",
                                                                    "important", "dropdown", "hint"}:
            stack.append((fence[0], len(fence)))           # markdown inside: keep scanning
            i += 1
            continue
        body, j = [], i + 1
        while j < len(lines):
            end = FENCE.match(lines[j])
            if end and not end.group(2) and end.group(1)[0] == fence[0] and len(end.group(1)) >= len(fence):
                break
            body.append(lines[j])
            j += 1
        out.append((i + 1, info, "\n".join(body)))
        i = j + 1
    return out


def _code_line_numbers(text: str) -> set[int]:
    inside = set()
    for start, _, body in code_blocks(text):
        inside.update(range(start, start + body.count("\n") + 3))
    return inside


def inline_commands(text: str) -> list[tuple[int, str]]:
    """Inline ``code spans`` outside code blocks that are commands (see INLINE_PROGRAMS)."""
    skip = _code_line_numbers(text)
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if n in skip:
            continue
        for m in re.finditer(r"(?<!`)`([^`\n]+)`(?!`)", line):
            span = m.group(1).strip()
            first = span.split()[0] if span.split() else ""
            if first in INLINE_PROGRAMS and len(span.split()) > 1:
                out.append((n, span))
    return out


def _starts_with_program(body: str) -> bool:
    """A block without a language is taken as shell when its first line is a command we check."""
    first = next((ln.split()[0] for ln in body.splitlines() if ln.strip()), "")
    return first in CHECKED


def page_commands(text: str) -> list[tuple[int, str, bool]]:
    """``(line number, command, inline)`` of every shell command of a page: code blocks in a shell
    language (continuation lines joined, trailing comments dropped) and inline commands."""
    out = []
    for start, info, body in code_blocks(text):
        lang = info.split()[0] if info else ""
        if lang not in SHELL_LANGS and (lang or not _starts_with_program(body)):
            continue
        logical, first = "", None
        for k, line in enumerate(body.splitlines()):
            line = re.sub(r"^\s*\$ ", "", line)
            first = start + 1 + k if first is None else first
            if line.rstrip().endswith("\\"):
                logical += line.rstrip()[:-1] + " "
                continue
            logical += line
            command = re.sub(r"\s+#\s.*$", "", logical).strip()
            if command and not command.startswith("#"):
                out.append((first, command, False))
            logical, first = "", None
    return out + [(n, cmd, True) for n, cmd in inline_commands(text)]


def split_command(command: str) -> list[list[str]]:
    """Simple commands of a command line (split at ``&&``, ``;``, ``|``), comments dropped."""
    lex = shlex.shlex(command, posix=True, punctuation_chars="&|;")
    lex.whitespace_split = True
    parts, current = [], []
    for tok in lex:
        if tok in OPERATORS:
            parts.append(current)
            current = []
        else:
            current.append(tok)
    return [p for p in parts + [current] if p]


# --------------------------------------------------------------------------------------------
# checking commands


def _argparse(args: list[str]):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return cli.build_parser().parse_args(args), None
    except SystemExit as stop:
        if stop.code == 0:                      # --help
            return None, None
        lines = [ln for ln in err.getvalue().strip().splitlines() if ln.strip()]
        return None, lines[-1] if lines else f"argparse exit {stop.code}"


def check_cellbook(args: list[str]) -> list[str]:
    ns, error = _argparse(args)
    if error:
        return [f"the command line refuses it ({error})"]
    if ns is None or ns.command != "run" and ns.command != "data":
        return []
    if ns.command == "data":
        from cellbook.datasets import REGISTRY

        names = [n for n in getattr(ns, "names", None) or [] if not PLACEHOLDER.match(n)]
        return [f"no dataset {n!r} (`cellbook data list`; known: {', '.join(sorted(REGISTRY))})"
                for n in names if n not in REGISTRY]
    from cellbook.config import profile_names

    if ns.profile not in profile_names():
        return [f"no profile {ns.profile!r} (valid: {', '.join(profile_names())})"]
    requested = [n for n in ns.notebooks if not PLACEHOLDER.match(n)]
    try:
        names = layout.resolve_names(requested or ["all"])
        overrides = runner.parse_overrides(ns.parameter)
    except ValueError as err:
        return [str(err)]
    problems = []
    known = set().union(*(layout.notebook_parameters(n) for n in names))
    unknown = sorted(set(overrides) - known)
    if unknown:
        problems.append(f"no notebook asked for has parameter(s) {', '.join(unknown)} "
                        f"(their parameters cells define: {', '.join(sorted(known))})")
    for name in names:
        own = {k: v for k, v in overrides.items() if k in layout.notebook_parameters(name)}
        try:
            runner.plan(name, ns.profile, ns.device, own)
        except ValueError as err:
            problems.append(str(err))
    return problems


def _makefile() -> tuple[set[str], set[str]]:
    text = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.MULTILINE))
    variables = set(re.findall(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*[?:+]?=", text, re.MULTILINE))
    return targets - {".PHONY"}, variables


def check_make(args: list[str]) -> list[str]:
    from cellbook.config import profile_names

    targets, variables = _makefile()
    problems = []
    for arg in args:
        if arg.startswith("-"):
            continue
        if "=" in arg:
            var, value = arg.split("=", 1)
            if var not in variables:
                problems.append(f"the Makefile has no variable {var} (it has {', '.join(sorted(variables))})")
            elif var == "PROFILE" and value not in profile_names():
                problems.append(f"no profile {value!r} (valid: {', '.join(profile_names())})")
            elif var == "DEVICE" and value not in ("auto", "cpu", "cuda"):
                problems.append(f"DEVICE={value} is not auto, cpu or cuda")
            elif var == "NOTEBOOKS":
                try:
                    layout.resolve_names(value.split())
                except ValueError as err:
                    problems.append(str(err))
        elif arg not in targets:
            problems.append(f"the Makefile has no target {arg!r} (it has {', '.join(sorted(targets))})")
    return problems


def check_python(args: list[str]) -> list[str]:
    if not args:
        return []
    if args[0] == "-c":
        try:
            compile(args[1], "<python -c>", "exec")
        except (SyntaxError, IndexError) as err:
            return [f"the Python code does not compile ({err})"]
        return []
    if args[0] == "-m":
        import importlib.util

        module = args[1] if len(args) > 1 else ""
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        return [] if found else [f"no module {module!r}"]
    if args[0] == "-i":
        return []                                  # an interactive script of the reader's own
    return check_script(args)


def check_script(args: list[str]) -> list[str]:
    script = next((a for a in args if not a.startswith("-")), None)
    if script is None:
        return []
    return [] if (REPO / script).is_file() else [f"no script {script} in the repository"]


def check_papermill(args: list[str]) -> list[str]:
    paths = [a for a in args if a.endswith(".ipynb")]
    if not paths:
        return ["papermill needs an input notebook"]
    nb = paths[0]
    if not (REPO / nb).is_file():
        return [f"no notebook {nb}"]
    name = nb.removeprefix("notebooks/").removesuffix(".ipynb")
    params = layout.notebook_parameters(name)
    keys = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-p", "--parameters")]
    return [f"{name} has no parameter {k!r} (it has {', '.join(sorted(params))})" for k in keys if k not in params]


def check_pytest(args: list[str]) -> list[str]:
    paths = [a.split("::")[0] for a in args if not a.startswith("-") and ("/" in a or a.endswith(".py"))]
    return [f"no test file {p}" for p in paths if not (REPO / p).exists()]


STALE = [
    (re.compile(r"/path/to\b"), "a fill-in path (/path/to/...): `make book` fetches the data itself"),
    (re.compile(r"<[a-z][^>]*>"), "a <placeholder>: write what the reader types, or NAME-style capitals"),
]


def mention_problems(prog: str, sub: str) -> list[str]:
    if prog in CELLBOOK:
        choices = cli.build_parser()._subparsers._group_actions[0].choices
        return [] if sub in choices else [f"no sub-command {sub!r} (valid: {', '.join(choices)})"]
    return command_problems(f"{prog} {sub}")


def command_problems(command: str, inline: bool = False) -> list[str]:
    """Why ``command`` (one line of a page) would fail or mislead; empty when it is fine.
    ``inline``: a code span in prose, where ``cellbook annotate`` names a sub-command."""
    problems = [why for pattern, why in STALE if pattern.search(command)]
    try:
        simple = split_command(command)
    except ValueError as err:
        return problems + [f"cannot be read as a shell command ({err})"]
    for words in simple:
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]                      # VAR=value before the program
        if not words:
            continue
        prog, args = words[0], words[1:]
        if inline and len(words) == 2 and not args[0].startswith("-"):
            problems += mention_problems(prog, args[0])    # `cellbook annotate`: names a sub-command
        elif prog in CELLBOOK:
            problems += check_cellbook(args)
        elif prog in MAKE:
            problems += check_make(args)
        elif prog in PYTHON:
            problems += check_python(args)
        elif prog in SCRIPT_RUNNERS:
            problems += check_script(args)
        elif prog in PAPERMILL:
            problems += check_papermill(args)
        elif prog in PYTEST:
            problems += check_pytest(args)
        elif prog == "export":
            continue
        elif prog not in EXTERNAL:
            problems.append(f"{prog!r} is not a command this test knows how to check; add a check to "
                            f"tests/test_book_pages.py or list it in EXTERNAL")
    return problems


def page_problems(page: str, text: str) -> list[str]:
    """Every problem of every command on one page, each naming the page, line and command."""
    return [f"{page}:{line}: `{cmd}`: {why}" for line, cmd, inline in page_commands(text)
            for why in command_problems(cmd, inline)]


# --------------------------------------------------------------------------------------------
# tests: commands


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_command_on_the_page_is_current(page):
    problems = page_problems(_rel(page), page.read_text())
    assert not problems, "stale commands:\n" + "\n".join(problems)


def test_pages_show_commands_to_check():
    """The extraction finds the commands (a parser that finds nothing would pass every page)."""
    found = {_rel(p): page_commands(p.read_text()) for p in PAGES}
    assert sum(map(len, found.values())) >= 40, found
    for page in ["book/workshop.md", "book/reproduce.md", "README.md", *(f"book/{p}" for p in TEACHING[1:])]:
        assert any("cellbook" in cmd for _, cmd, _ in found[page]), f"{page}: no cellbook command found"


DOCTORED = """# A page

Some text with `cellbook run part1/01_data -p seed=1` inline.

```bash
.venv/bin/cellbook run --out book/_build/exercises part1/03_table1 -p n_seeds=5
.venv/bin/cellbook run part1/03_table1 -p seeds=three
.venv/bin/cellbook run part9/01_nothing
.venv/bin/cellbook go part1
.venv/bin/cellbook run part1 --profile fast
.venv/bin/cellbook data fetch no_such_dataset
make books
make book PROFLE=full
python benchmarks/bench_nothing.py
bash .gpu/run bash benchmarks/gpu_check.sh part2
export CELLBOOK_DATA=/path/to/data
git clone <this repository> cellbook
frobnicate --all
```

:::{admonition} Solution
:class: dropdown
```bash
.venv/bin/cellbook run --out book/_build/exercises part3/07_noise -p noise=0.3
```
:::
"""


def test_a_stale_command_fails_naming_the_page_and_the_command():
    problems = page_problems("book/doctored.md", DOCTORED)
    text = "\n".join(problems)

    def has(line, cmd, why):
        return any(p.startswith(f"book/doctored.md:{line}: `{cmd}`") and why in p for p in problems), text

    assert has(7, ".venv/bin/cellbook run --out book/_build/exercises part1/03_table1 -p n_seeds=5",
               "parameter(s) n_seeds")
    assert has(8, ".venv/bin/cellbook run part1/03_table1 -p seeds=three", "parameter 'seeds'")
    assert has(9, ".venv/bin/cellbook run part9/01_nothing", "unknown notebook 'part9/01_nothing'")
    assert has(10, ".venv/bin/cellbook go part1", "the command line refuses it")
    assert has(11, ".venv/bin/cellbook run part1 --profile fast", "no profile 'fast'")
    assert has(12, ".venv/bin/cellbook data fetch no_such_dataset", "no dataset 'no_such_dataset'")
    assert has(13, "make books", "no target 'books'")
    assert has(14, "make book PROFLE=full", "no variable PROFLE")
    assert has(15, "python benchmarks/bench_nothing.py", "no script benchmarks/bench_nothing.py")
    assert has(16, "bash .gpu/run bash benchmarks/gpu_check.sh part2", "no script .gpu/run")
    assert has(17, "export CELLBOOK_DATA=/path/to/data", "fill-in path")
    assert has(18, "git clone <this repository> cellbook", "<placeholder>")
    assert has(19, "frobnicate --all", "not a command this test knows")
    assert has(25, ".venv/bin/cellbook run --out book/_build/exercises part3/07_noise -p noise=0.3",
               "parameter(s) noise")           # inside a folded solution too
    assert not any(":3:" in p for p in problems), text   # the inline command is fine
    assert len(problems) == 14, text


def test_good_commands_pass():
    for cmd in [".venv/bin/cellbook run part1/03_table1 part1/05_heldout_donors -p 'seeds=[3, 4, 5]'",
                (".venv/bin/cellbook run --out book/_build/exercises part2/02_spatial_spectral "
                 "-p 'ws_values=[1, 3, 5]' -p 'ssn_values=[2, 4, 8]'"),
                "cellbook run PART --profile full --device cuda",
                "cellbook run all --profile full --scheduler tcp://HOST:8786",
                ".venv/bin/cellbook data fetch vangalen2019_bm_seqwell",
                "make book PROFILE=full DEVICE=cuda NOTEBOOKS=part1",
                "make test-fast", "bash benchmarks/gpu_check.sh part2", ".venv/bin/cellbook --help",
                "cd cellbook && make book"]:
        assert command_problems(cmd) == [], cmd


REPO_PATH = re.compile(r"`((?:cellbook|benchmarks|notebooks|tests|binder|book|\.ci)/[^`\s]*|Makefile|environment\.yml|"
                       r"pyproject\.toml|CONTRIBUTING\.md|DEVELOPERS\.md)`")


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_repository_paths_named_on_the_page_exist(page):
    """`cellbook/profiles.yaml`, `benchmarks/bench_part1.py`, `binder/`: a file a page names is there
    (build products under `_build` and patterns with `<...>` or `*` aside)."""
    missing = []
    for n, line in enumerate(page.read_text().splitlines(), 1):
        for m in REPO_PATH.finditer(line):
            path = m.group(1)
            if not any(c in path for c in "<*") and "_build" not in path and not (REPO / path).exists():
                missing.append(f"{_rel(page)}:{n}: `{path}` does not exist")
    assert not missing, "\n".join(missing)


# --------------------------------------------------------------------------------------------
# tests: includes, placeholders, internal references, Colab / Binder

INCLUDE = re.compile(r"^```\{include\}\s+(\S+)\s*\n((?::[\w-]+:.*\n)*)```", re.MULTILINE)


def includes(text: str) -> list[tuple[str, dict]]:
    out = []
    for m in INCLUDE.finditer(text):
        opts = dict(re.findall(r"^:([\w-]+):\s*(.*?)\s*$", m.group(2), re.MULTILINE))
        out.append((m.group(1), opts))
    return out


@pytest.mark.parametrize("page", sorted((REPO / "book").glob("*.md")), ids=_rel)
def test_includes_point_at_existing_markers(page):
    for target, opts in includes(page.read_text()):
        path = (page.parent / target).resolve()
        assert path.is_file(), f"{_rel(page)}: {{include}} {target}: no such file"
        text = path.read_text()
        for key in ("start-after", "end-before"):
            if key in opts:
                assert text.count(opts[key]) == 1, f"{_rel(page)}: {{include}} {target}: marker {opts[key]!r} " \
                                                   f"must occur exactly once in {path.name}"
        if "start-after" in opts and "end-before" in opts:
            part = text.split(opts["start-after"], 1)[1].split(opts["end-before"], 1)[0]
            assert "make book" in part, f"{_rel(page)}: the included set-up has no `make book`"


@pytest.mark.parametrize("name", TEACHING)
def test_teaching_pages_take_the_set_up_from_the_readme(name):
    text = (REPO / "book" / name).read_text()
    assert any(t == "../README.md" and o.get("start-after") == "<!-- setup-start -->"
               and o.get("end-before") == "<!-- setup-end -->" for t, o in includes(text)), \
        f"book/{name}: the set-up commands must come from the README (an {{include}} of its setup block)"
    assert "CELLBOOK_DATA=" not in text and "git clone" not in text, \
        f"book/{name}: set-up instructions of its own (they live in the README's set-up block)"


FORBIDDEN = [".gpu/", "REFERENCE.md", "REFERENCE trap", "/path/to/", "<this repository>"]


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_pages_hold_no_internal_references_or_fill_ins(page):
    text = page.read_text()
    found = [f for f in FORBIDDEN if f in text]
    assert not found, f"{_rel(page)} shows readers {found}"


def paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


@pytest.mark.parametrize("page", sorted((REPO / "book").glob("*.md")), ids=_rel)
def test_colab_and_binder_are_described_on_the_reproduce_page_only(page):
    if page.name == "reproduce.md":
        text = page.read_text()
        assert "Colab" in text and "Binder" in text
        return
    for par in paragraphs(page.read_text()):
        if re.search(r"Colab|Binder", par):
            assert re.search(r"\{doc\}`[^`]*reproduce", par) or "reproduce.md" in par, (
                f"{_rel(page)}: this paragraph describes Colab/Binder; say it once in book/reproduce.md and "
                f"link there:\n{par}")


def test_intro_is_a_home_page_without_typed_numbers():
    text = (REPO / "book" / "intro.md").read_text()
    for link in ("part1", "part2", "part3", "reproduce", "workshop", "01_results"):
        assert link in text, f"book/intro.md does not link {link}"
    typed = re.findall(r"(?<![\w.])\d+(?:\.\d+)?\s*%|(?<![\w.])\d+\.\d+(?![\w.])", text)
    assert not typed, f"book/intro.md types numbers (they belong to the pages that compute them): {typed}"
