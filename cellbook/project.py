"""The project's address in one place, and the setup cell every chapter opens with.

``REPOSITORY_URL`` is the only place the repository's address is written.  The book's
``_config.yml`` (repository, issue, Binder and Colab buttons) is staged from it by
:mod:`cellbook.book`, every chapter's setup cell is generated from it by :func:`setup_cell`,
and the tests check that the README and ``_config.yml`` agree with it.

Each chapter's setup cell (tagged ``cellbook-setup``, hidden in the book) makes a launch button
work: on Colab, Binder or any machine without ``cellbook`` it installs the package (from the
repository, or from ``$CELLBOOK_INSTALL``: a pip requirement, a wheel or a local checkout),
then calls :func:`cellbook.datasets.ensure` with the chapter's datasets, which fetches and
builds what is missing.  The runner reads the same list to fetch data before a build.
"""
from __future__ import annotations

REPOSITORY_URL = "https://github.com/cellbook/cellbook"
BRANCH = "main"
SETUP_TAGS = ["cellbook-setup", "remove-cell"]


def install_requirement() -> str:
    """What the setup cell pip-installs when ``cellbook`` is missing (``$CELLBOOK_INSTALL`` overrides)."""
    return f"cellbook @ git+{REPOSITORY_URL}@{BRANCH}"


def setup_cell(datasets: list[str] | tuple[str, ...] = ()) -> str:
    """The source of a chapter's setup cell (it runs after the parameters cell)."""
    lines = [
        "# Setup (hidden in the book): on Colab, Binder or a machine without cellbook, install it;",
        "# then make sure this chapter's datasets are here (fetched from their official sources if not).",
        "import importlib.util",
        "import os",
        "import subprocess",
        "import sys",
        "",
        "if importlib.util.find_spec(\"cellbook\") is None:",
        "    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\",",
        f"                    os.environ.get(\"CELLBOOK_INSTALL\", \"{install_requirement()}\")], check=True)",
        "import cellbook as cb",
    ]
    if datasets:
        names = ", ".join(f'"{d}"' for d in datasets)
        # the trailing ";" keeps the returned local paths out of the executed copy
        lines += ["", f"cb.datasets.ensure({names}, fallback=fallback, path=data_path);"]
    return "\n".join(lines)
