"""Display helpers for the book's pages: collapsible tables, captions, numbers, the results summary.

    from cellbook import report
    report.collapsible(big_df, "All 15 cell types x 18 donors")   # a <details> block, closed
    report.caption("Accuracy per cell type; mean over 3 seeds.", n=2) # "Figure 2. ..." under a figure
    report.fmt(0.91234) -> "0.912"; report.fmt(10032) -> "10,032"; report.fmt(None) -> "–"

    results = cellbook.results.load_all()                  # every notebook's results JSON
    report.headline_table(results)                         # the summary page's table
    report.runtime_table(report.load_run(), results)       # seconds per notebook and profile

All of these return objects that Jupyter displays (``IPython.display.HTML`` / ``Markdown``) or
plain DataFrames; none needs a running kernel to be tested.
"""
from __future__ import annotations

import html
import math
import numbers
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .layout import RUN_RECORD, read_run_file
from .results import results_dir

# The book's parts, in order, with the short names the summary page uses.
PARTS = {
    "part1": "Part I - cell types from scRNA-seq (CNN ensemble)",
    "part2": "Part II - stem-cell quality from microscopy (separable CNN)",
    "part3": "Part III - cell identity codes (autoencoders)",
}
NOT_RUN = "not run yet"
NO_HEADLINE = "run, but no headline number recorded yet"
HEADLINE_COLUMNS = ["part", "notebook", "metric", "ours", "paper", "ours / paper", "note", "profile"]
RUNTIME_COLUMNS = ["part", "notebook", "profile", "device", "seconds", "wall_s"]


# ------------------------------------------------------------------------------------------
# formatting

def is_number(value) -> bool:
    """True for finite real numbers (not bools, not strings, not NaN / None)."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(float(value)))


_MEAN_SD = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(%?)\s*(?:±|\+/-|\+-)\s*"
                      r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*(%?)\s*$")


def as_number(value):
    """A headline value as a number: numbers as they are, ``"0.912 ± 0.011"`` -> 0.912,
    ``"89.56 ± 3.09 %"`` -> 0.8956; anything else (text, ranges, arrows) -> None."""
    if is_number(value):
        return float(value)
    if isinstance(value, str):
        m = _MEAN_SD.match(value)
        if m:
            v = float(m.group(1))
            return v / 100 if (m.group(2) or m.group(3)) else v
    return None


def fmt(value, digits: int = 3) -> str:
    """One number format for the whole book.

    Integers get thousands separators (``10032 -> "10,032"``); other numbers ``digits``
    significant digits, without scientific notation between 1e-4 and 1e6; ``None`` / NaN
    give an en dash; anything else is ``str(value)``.
    """
    if not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits must be a positive int, got {digits!r}")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    if v.is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    if v != 0 and (abs(v) < 1e-4 or abs(v) >= 1e6):
        return f"{v:.{digits - 1}e}"
    text = f"{v:.{digits}g}"
    if "e" in text:  # .g switched to exponent (e.g. 12345.6 with 3 digits): round instead
        text = f"{round(v):,}"
    return text


def fmt_p(p) -> str:
    """A p-value for the page: ``"3.2e-08"``, ``"0.041"``; a p that underflowed to 0 in double
    precision reads ``"< 1e-300"`` (never "0.0", which would claim certainty)."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    p = float(p)
    if not 0 <= p <= 1:
        raise ValueError(f"a p-value must be in [0, 1], got {p}")
    if p < 1e-300:
        return "< 1e-300"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def decimals(value, digits: int = 3) -> int:
    """Decimal places that give ``value`` ``digits`` significant digits (0 for large values, at most 6)."""
    v = abs(float(value))
    if not math.isfinite(v) or v == 0:
        return digits
    return int(min(6, max(0, digits - 1 - math.floor(math.log10(v)))))


def pm(mean, sd, digits: int = 3) -> str:
    """``mean ± sd``, both with the same decimals: ``digits`` significant digits of the mean
    (``pm(0.9123, 0.0111) -> "0.912 ± 0.011"``, ``pm(0.75, 0.00527) -> "0.750 ± 0.005"``): the book's one
    mean ± SD format.  Without a spread (``sd`` None or NaN, e.g. a single run) only the mean."""
    if sd is None or (isinstance(sd, float) and math.isnan(sd)):
        return fmt(mean, digits)
    if mean is None or not is_number(mean) or not is_number(sd):
        return f"{fmt(mean, digits)} ± {fmt(sd, digits)}"
    d = decimals(mean if float(mean) != 0 else sd, digits)
    return f"{float(mean):,.{d}f} ± {float(sd):,.{d}f}"


def mean_sd(values, digits: int = 3) -> str:
    """:func:`pm` of repeats: the mean and the SD (ddof=1) of ``values`` (one value: the value alone)."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        raise ValueError("mean_sd needs at least one value")
    return pm(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else None, digits)


# ------------------------------------------------------------------------------------------
# display

_SECONDS_COL = re.compile(r"(\(s\)|\bseconds?\b|\bsec\b|\btime\b|\bwall\b|_s$|\bs$)", re.IGNORECASE)
_P_COL = re.compile(r"(^p$|^p[ _(]|\bp-?value|\bp \(|[ _]p$|\bp_|\bq-?value\b|\bfdr\b|\bpadj\b|p_adj)",
                    re.IGNORECASE)


def _column_kind(name, values: pd.Series) -> str:
    """How a column is shown: "int", "seconds", "p", "float", "bool" or "text"."""
    if pd.api.types.is_bool_dtype(values):
        return "bool"
    if not pd.api.types.is_numeric_dtype(values):
        return "text"
    label = str(name)
    if _P_COL.search(label):
        return "p"
    finite = values.dropna().astype(float)
    finite = finite[np.isfinite(finite)]
    if pd.api.types.is_integer_dtype(values) or (len(finite) and (finite == finite.round()).all()
                                                 and not _SECONDS_COL.search(label)):
        return "int"
    if _SECONDS_COL.search(label):
        return "seconds"
    return "float"


def _cell_text(value, kind: str, places: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if kind == "bool":
        return "yes" if bool(value) else "no"
    if kind == "p":
        return fmt_p(value)
    if not is_number(value):
        return "–" if isinstance(value, numbers.Real) and not isinstance(value, bool) else str(value)
    if kind == "int":
        return f"{int(round(float(value))):,}"
    return f"{float(value):,.{places}f}"


def format_table(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Every cell of ``df`` as the page shows it (strings): integers stay integers (``10,032``), seconds get
    one decimal, p-values :func:`fmt_p`, other numbers ``digits`` significant digits of the column's largest
    value (at least ``digits`` decimals for a column of scores or shares at most 1, never more than 4) with
    the same decimals down the column, missing values an en dash, booleans yes / no."""
    out = {}
    for col in df.columns:
        values = df[col]
        kind = _column_kind(col, values)
        places = 1
        if kind == "float":
            finite = pd.to_numeric(values, errors="coerce").abs()
            finite = finite[np.isfinite(finite)]
            top = finite.max() if len(finite) else 0.0
            # scores and shares (at most 1) keep ``digits`` decimals, side by side; never more than 4
            places = digits if not top > 0 else min(4, max(decimals(top, digits), digits if top <= 1 else 0))
        out[col] = [_cell_text(v, kind, places) for v in values]
    return pd.DataFrame(out, index=df.index, columns=df.columns)


def _csv_link(df: pd.DataFrame, name: str) -> str:
    import base64

    data = base64.b64encode(df.to_csv(index=False).encode()).decode()
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "table"
    return (f'<a class="cellbook-csv" download="{safe}.csv" href="data:text/csv;base64,{data}">'
            f"Download this table as CSV (full precision)</a>")


def table_html(df, *, digits: int = 3, index: bool | None = None, name: str | None = None,
               csv: bool = True) -> str:
    """The HTML of :func:`table` (no IPython needed)."""
    if isinstance(df, pd.Series):
        df = df.to_frame()
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"table: expected a DataFrame or Series, got {type(df).__name__}")
    if index is None:
        index = df.index.name is not None or any(n is not None for n in df.index.names) \
            or not isinstance(df.index, pd.RangeIndex)
    frame = df.reset_index() if index else df.reset_index(drop=True)
    if isinstance(frame.columns, pd.MultiIndex):
        frame.columns = [", ".join(str(c) for c in col if str(c)) for col in frame.columns]
    shown = format_table(frame, digits)
    head = "".join(f'<th class="{"num" if _column_kind(c, frame[c]) not in ("text", "bool") else "text"}">'
                   f"{html.escape(str(c))}</th>" for c in frame.columns)
    kinds = {c: _column_kind(c, frame[c]) for c in frame.columns}
    rows = []
    for i in range(len(shown)):
        cells = []
        for c in frame.columns:
            cls = "num" if kinds[c] not in ("text", "bool") else "text"
            cells.append(f'<td class="{cls}">{html.escape(shown[c].iat[i])}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    markup = (f'<div class="cellbook-table"><table><thead><tr>{head}</tr></thead>'
              f'<tbody>{"".join(rows)}</tbody></table></div>')
    if csv and name:
        markup += _csv_link(frame, name)
    return markup


def table(df, *, digits: int = 3, index: bool | None = None, name: str | None = None, csv: bool = True,
          caption: str | None = None):
    """A table as the book shows it: every table on every page goes through here.

    Numbers are right-aligned and padded, formatted by :func:`format_table` (integers as integers, seconds
    with one decimal, p-values with :func:`fmt_p`, other numbers with ``digits`` significant digits, the
    same decimals down a column, missing values as "–"); long text wraps; a table wider than the column
    scrolls inside its own box. With ``name`` a link under the table downloads the full-precision values
    as CSV. ``index``: show the index as the first column (default: when it is named or not a plain range).
    ``caption``: a line under the table. Returns ``IPython.display.HTML``.
    """
    markup = table_html(df, digits=digits, index=index, name=name, csv=csv)
    if caption:
        markup += (f'<p class="cellbook-caption" style="font-size:0.9em;color:#555">'
                   f"{html.escape(caption.strip())}</p>")
    return _html(markup)


def _table_html(table, index: bool, float_digits: int) -> str:
    if isinstance(table, (pd.Series, pd.DataFrame)):
        return table_html(table, digits=float_digits, index=index, csv=False)
    if isinstance(table, str):
        return table
    if hasattr(table, "to_html"):  # a pandas Styler
        return table.to_html()
    raise ValueError(f"collapsible: expected a DataFrame, Series, Styler or HTML string, got {type(table).__name__}")


def collapsible(table, summary: str, open: bool = False, index: bool = True, float_digits: int = 3):
    """A large table behind a click: ``<details><summary>summary</summary>table</details>``.

    ``table`` is a DataFrame / Series (floats formatted with :func:`fmt`), a pandas Styler or
    an HTML string. The summary line should say what the table holds and how big it is; the
    row count is appended when ``table`` is a DataFrame. Returns ``IPython.display.HTML``.
    """
    if not isinstance(summary, str) or not summary.strip():
        raise ValueError("collapsible: summary must be a non-empty string saying what the table holds")
    body = _table_html(table, index, float_digits)
    label = html.escape(summary.strip())
    if isinstance(table, (pd.DataFrame, pd.Series)):
        label += f" ({len(table):,} row{'' if len(table) == 1 else 's'})"
    markup = (f'<details class="cellbook-collapsible"{" open" if open else ""}>'
              f'<summary style="cursor:pointer;font-weight:600">{label}</summary>'
              f'<div style="overflow-x:auto;max-height:32em">{body}</div></details>')
    return _html(markup)


def caption(text: str, n: int | None = None, kind: str = "Figure"):
    """A caption under a figure or table: ``"**Figure 2.** text"`` (``n=None``: no number).

    Build ``text`` from results (``f"... {fmt(rec['accuracy'])} ..."``), never type numbers.
    Returns ``IPython.display.Markdown``.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("caption: text must be a non-empty string")
    label = f"{kind} {n}." if n is not None else f"{kind}."
    return _markdown(f'<p class="cellbook-caption" style="font-size:0.9em;color:#555">'
                     f"<strong>{html.escape(label)}</strong> {html.escape(text.strip())}</p>")


def _html(markup: str):
    try:
        from IPython.display import HTML
    except ImportError:  # pragma: no cover - IPython ships with every notebook install
        return markup
    return HTML(markup)


def _markdown(text: str):
    try:
        from IPython.display import Markdown
    except ImportError:  # pragma: no cover
        return text
    return Markdown(text)


# ------------------------------------------------------------------------------------------
# the results summary

_LOWER_IS_BETTER = re.compile(r"\b(error|errors|mse|loss|seconds|minutes|time|wilcoxon p|p-value|p value)\b",
                              re.IGNORECASE)


def lower_is_better(metric: str) -> bool:
    """A guess from the metric's name: errors, MSE, loss, times and p-values are better when lower.

    Parentheses and "by <word>" phrases are ignored: "REP ranked 1st by MSE (Fig. 2c)" is a share
    (higher is better) whose ranking happens to use MSE.
    """
    core = re.sub(r"\([^)]*\)", " ", str(metric))
    core = re.sub(r"\bby\s+\S+", " ", core, flags=re.IGNORECASE)
    return bool(_LOWER_IS_BETTER.search(core))


def part_of(name: str) -> str:
    return name.split("/")[0]


def headline_table(results: dict, parts: dict | None = None, include_missing: bool = True) -> pd.DataFrame:
    """Every results JSON's ``figures["headline"]`` rows as one table, in part / notebook order.

    ``results`` is :func:`cellbook.results.load_all` output (``{notebook: payload}``). Columns:
    part, notebook, metric, ours, paper, ours / paper (when both are numbers, or ``mean ± SD``
    strings, see :func:`as_number`, and the paper's is non-zero), note, profile (from the notebook's
    provenance). A part of ``parts`` with no headline rows gets one row (when ``include_missing``)
    whose metric says ``"not run yet"`` (no results at all) or :data:`NO_HEADLINE` (notebooks ran
    but recorded no headline).
    """
    if not isinstance(results, dict):
        raise ValueError(f"headline_table: results must be a dict {{notebook: payload}}, got {type(results).__name__}")
    parts = PARTS if parts is None else parts
    rows = []
    for name in sorted(results):
        payload = results[name]
        if not isinstance(payload, dict):
            raise ValueError(f"headline_table: results[{name!r}] is not a results payload (dict)")
        profile = (payload.get("provenance") or {}).get("profile")
        for h in (payload.get("figures") or {}).get("headline") or []:
            ours, paper = h.get("ours"), h.get("paper")
            o, p_ = as_number(ours), as_number(paper)
            ratio = o / p_ if o is not None and p_ not in (None, 0) else None
            rows.append({"part": h.get("part") or part_of(name), "notebook": name, "metric": h.get("metric"),
                         "ours": ours, "paper": paper, "ours / paper": ratio, "note": h.get("note") or "",
                         "profile": profile})
    if include_missing:   # one frame from all rows (concatenating an all-empty frame is deprecated in pandas)
        have, ran = {r["part"] for r in rows}, {part_of(n) for n in results}
        rows += [{"part": p, "notebook": "", "metric": NO_HEADLINE if p in ran else NOT_RUN, "ours": None,
                  "paper": None, "ours / paper": None, "note": "", "profile": None}
                 for p in parts if p not in have]
    df = pd.DataFrame(rows, columns=HEADLINE_COLUMNS)
    order = {p: i for i, p in enumerate(parts)}
    df["_o"] = df["part"].map(lambda p: order.get(p, len(order)))
    df = df.sort_values(["_o", "notebook"], kind="stable").drop(columns="_o").reset_index(drop=True)
    return df


def headline_html(table: pd.DataFrame, link: str | None = "../{notebook}.html", digits: int = 3,
                  ratio: bool = True):
    """A compact, readable HTML table of :func:`headline_table` rows (one part, or several).

    Columns: metric (with the chapter it comes from, linked with ``link`` formatted with
    ``notebook``, e.g. ``part1/03_table1``; ``None``: no link), ours, paper, ours / paper (``ratio=False``:
    left out, for metrics of different kinds where a ratio says little), note;
    the profile is added to the note when the rows come from more than one profile. Fixed
    column widths keep long notes from squeezing the numbers. Returns ``IPython.display.HTML``.
    """
    need = {"notebook", "metric", "ours", "paper", "ours / paper", "note", "profile"}
    if not isinstance(table, pd.DataFrame) or not need <= set(table.columns):
        raise ValueError(f"headline_html: expected headline_table() output with columns {sorted(need)}")
    mixed = table["profile"].dropna().nunique() > 1
    if ratio:
        head = ('<colgroup><col style="width:34%"><col style="width:13%"><col style="width:13%">'
                '<col style="width:8%"><col style="width:32%"></colgroup>'
                "<thead><tr><th>metric</th><th>ours</th><th>paper</th><th>ours / paper</th><th>note</th></tr></thead>")
    else:
        head = ('<colgroup><col style="width:36%"><col style="width:16%"><col style="width:14%">'
                '<col style="width:34%"></colgroup>'
                "<thead><tr><th>metric</th><th>ours</th><th>paper</th><th>note</th></tr></thead>")
    body = []
    for _, r in table.iterrows():
        nb = r["notebook"] or ""
        where = ""
        if nb:
            label = html.escape(nb)
            where = (f'<br><small><a href="{html.escape(link.format(notebook=nb))}">{label}</a></small>' if link
                     else f"<br><small>{label}</small>")
        note = str(r["note"] or "")
        if mixed and r["profile"]:
            note = f"[{r['profile']}] " + note
        cells = [f"{html.escape(str(r['metric']))}{where}", html.escape(fmt(r["ours"], digits)),
                 html.escape(fmt(r["paper"], digits))]
        cells += [html.escape(fmt(r["ours / paper"], digits))] if ratio else []
        cells += [f"<small>{html.escape(note)}</small>"]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    markup = (f'<div class="cellbook-table"><table class="cellbook-headlines" style="table-layout:fixed;'
              f'width:100%;min-width:36em">{head}<tbody>{"".join(body)}</tbody></table></div>')
    return _html(markup)


def part_status(results: dict, parts: dict | None = None) -> pd.DataFrame:
    """Per part: notebooks with results, headline rows, profiles seen, or ``"not run yet"``."""
    parts = PARTS if parts is None else parts
    rows = []
    for p, title in parts.items():
        names = sorted(n for n in results if part_of(n) == p)
        n_head = sum(len((results[n].get("figures") or {}).get("headline") or []) for n in names)
        profiles = sorted({str((results[n].get("provenance") or {}).get("profile")) for n in names})
        rows.append({"part": p, "title": title, "notebooks run": len(names), "headline rows": n_head,
                     "profiles": ", ".join(profiles) if names else NOT_RUN})
    return pd.DataFrame(rows)


def load_run(directory: str | Path | None = None) -> dict:
    """``_run.json`` written by ``cellbook run`` (``{"profile", "device", "seconds": {nb: s},
    "notebooks": {nb: {"seconds", "profile", "device", "gpu", "finished_utc", ...}}}``), or {}.
    A corrupt file is a ``ValueError`` naming it."""
    return read_run_file(Path(directory or results_dir()) / RUN_RECORD)


def runtime_by_setting(run: dict) -> pd.DataFrame:
    """Seconds per notebook for every profile and device recorded in ``_run.json``, side by side.

    One row per notebook, one column per setting (``"quick on cpu"``, ``"full on cuda (NVIDIA H200)"``,
    ...), plus a ``total`` row; empty where a notebook was never run that way.  Each ``cellbook run``
    adds to its own setting's column, so a CPU run and a GPU run in the same checkout both show.
    """
    if not isinstance(run, dict):
        raise ValueError(f"runtime_by_setting: run must be the dict from _run.json, got {type(run).__name__}")
    settings = run.get("by_setting") or {}
    if not settings:
        return pd.DataFrame(columns=["notebook"])
    names = sorted({n for entries in settings.values() for n in entries})
    df = pd.DataFrame({label: [entries.get(n, {}).get("seconds") for n in names]
                       for label, entries in settings.items()}, index=pd.Index(names, name="notebook"))
    df = df.astype(float)
    df.loc["total"] = df.sum(min_count=1)
    return df.reset_index()


def runtime_table(run: dict, results: dict | None = None) -> pd.DataFrame:
    """Seconds per notebook (from ``_run.json``) with each notebook's profile / device / own wall time.

    ``seconds`` is what ``cellbook run`` measured around papermill (kernel start included);
    ``wall_s`` is the notebook's own clock (Recorder start to save). Notebooks with results but
    no recorded run time (run some other way) are listed with ``seconds`` empty.
    """
    if not isinstance(run, dict):
        raise ValueError(f"runtime_table: run must be the dict from _run.json, got {type(run).__name__}")
    results = results or {}
    seconds = run.get("seconds") or {}
    rows = []
    for name in sorted(set(seconds) | set(results)):
        prov = (results.get(name) or {}).get("provenance") or {}
        rows.append({"part": part_of(name), "notebook": name,
                     "profile": prov.get("profile", run.get("profile")),
                     "device": prov.get("device", run.get("device")),
                     "seconds": seconds.get(name), "wall_s": prov.get("wall_s")})
    return pd.DataFrame(rows, columns=RUNTIME_COLUMNS)
