"""A small Sphinx extension for the book's build (listed in ``_config.yml``).

Jupyter Book 1.x always loads ``sphinx_thebe`` (live code in the page). The book does not use live code
(its launch buttons open Colab or Binder instead), yet every page carried thebe's scripts: its defaults
point at an unrelated Binder repository, and the inline script that declares ``THEBE_JS_URL`` ran twice
("already declared" in the console). This extension drops those scripts from every page.
"""
from __future__ import annotations


def _is_thebe(script) -> bool:
    name = str(getattr(script, "filename", script) or "")
    body = str((getattr(script, "attributes", None) or {}).get("body", ""))
    return "thebe" in name.lower() or "THEBE_JS_URL" in body


def drop_thebe_scripts(app, pagename, templatename, context, doctree) -> None:
    for key in ("script_files", "css_files"):
        if context.get(key):
            context[key] = [s for s in context[key] if not _is_thebe(s)]


def drop_thebe_config(app, doctree, docname) -> None:
    """Remove the ``<script type="text/x-thebe-config">`` block sphinx_thebe puts in each page."""
    from docutils import nodes

    for node in list(doctree.findall(nodes.raw)):
        if "x-thebe-config" in node.astext():
            node.parent.remove(node)


def setup(app):
    app.connect("html-page-context", drop_thebe_scripts, priority=900)
    app.connect("doctree-resolved", drop_thebe_config, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
