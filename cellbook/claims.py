"""The claims ledger: each paper's claims, one line each, judged against this build's results.

``book/claims.yml`` lists, per part, each claim with the chapter whose results test it, the paper's number
and a rule. :func:`evaluate` judges every claim against the results JSON of the build (``holds``,
``does not hold`` or ``not testable here``, always with the reason); :func:`ledger_table` /
:func:`part_table` show the verdicts on a page::

    cb.claims.ledger_table()                 # the summary page: every paper, one block each
    cb.claims.part_table("part1", rec)       # the end of a part's last chapter (its own results from rec)

Rules (``rule: {kind: ...}``); a value is a key of the chapter's ``figures`` (a number, or ``[mean, sd]``):

* ``better``: ``a`` beats ``b`` (``lower: true`` when lower is better): holds when the difference of the
  means exceeds the spread over repeats (the larger of the two SDs) and, when ``p`` names a recorded p-value of the
  paired test, p < ``alpha`` (0.05); does not hold otherwise. ``a_sd`` / ``b_sd`` name the SDs when they
  are recorded apart from the means.

A key may be a list: a path into nested figures (``[acc_at_largest, SCNN]``).
* ``best_of``: ``a`` beats each of ``others`` as ``better`` does (without p-values); the reason names the
  strongest rival.
* ``within``: ``value`` is within ``tolerance`` (absolute) of ``target`` (the paper's number).
* ``at_least`` / ``at_most``: ``value`` compared with ``threshold`` (``what`` names the value in the reason;
  ``p_value: true`` formats both as p-values).
* ``member``: ``item`` is in the list ``value`` (``negate: true``: must not be).
* ``untestable``: not testable here; ``reason`` says why.

``needs_profile: full`` makes a claim *not testable here* on other profiles (the reason names the profile).
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from .report import PARTS, fmt, fmt_p, is_number
from .report import _html as _display_html
from .results import load_all

HOLDS, FAILS, UNTESTABLE = "holds", "does not hold", "not testable here"
VERDICTS = (HOLDS, FAILS, UNTESTABLE)
RULE_KINDS = ("better", "best_of", "within", "at_least", "at_most", "member", "untestable")
LEDGER = Path(__file__).resolve().parents[1] / "book" / "claims.yml"
COLUMNS = ["part", "id", "claim", "paper", "ours", "verdict", "reason", "chapter"]


@dataclass
class Verdict:
    verdict: str
    ours: str
    reason: str


def load_ledger(path: str | Path | None = None) -> dict:
    """``book/claims.yml`` as ``{part: {"title": ..., "claims": [...]}}``, checked: every claim has an id, a
    text, a chapter and a rule of a known kind (a ``ValueError`` names the claim otherwise)."""
    path = Path(path or LEDGER)
    try:
        ledger = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"claims ledger {path} cannot be read: {err}") from err
    if not isinstance(ledger, dict):
        raise ValueError(f"claims ledger {path}: expected a mapping of parts")
    for part, block in ledger.items():
        for c in (block or {}).get("claims") or []:
            cid = c.get("id", "?")
            missing = [k for k in ("id", "claim", "chapter", "rule") if not c.get(k)]
            if missing:
                raise ValueError(f"claims ledger {path}: claim {cid} of {part} lacks {', '.join(missing)}")
            kind = (c["rule"] or {}).get("kind")
            if kind not in RULE_KINDS:
                raise ValueError(f"claims ledger {path}: claim {cid} has rule kind {kind!r}; "
                                 f"expected one of {RULE_KINDS}")
    return ledger


def _mean_sd(value):
    """``(mean, sd)`` of a recorded value: a number, ``[mean, sd]`` or a "mean ± sd" string."""
    if isinstance(value, (list, tuple)) and value:
        mean = value[0]
        sd = value[1] if len(value) > 1 else None
        return (float(mean) if is_number(mean) else None, float(sd) if is_number(sd) else 0.0)
    if isinstance(value, str):
        parts = value.replace("%", "").split("±")
        try:
            return float(parts[0]), float(parts[1]) if len(parts) > 1 else 0.0
        except ValueError:
            return None, None
    if is_number(value):
        return float(value), 0.0
    return None, None


def _f(x) -> str:
    """A number for the ledger: 3 significant digits, never more than 4 decimals."""
    if is_number(x) and 0 < abs(float(x)) < 0.001:
        return f"{float(x):.1e}"
    if is_number(x) and abs(float(x)) < 0.01:
        return fmt(x, 2)
    if is_number(x) and abs(float(x)) < 1 and float(x) != 0:
        return f"{float(x):.3f}"        # scores side by side with the same decimals: 0.670 vs 0.750
    return fmt(x)


def _get(figures: dict, key):
    """A figure by key, or by a path of keys into nested dicts (``[acc_at_largest, SCNN]``)."""
    path = list(key) if isinstance(key, (list, tuple)) else [key]
    value = figures
    for k in path:
        if isinstance(value, list) and isinstance(k, int) and -len(value) <= k < len(value):
            value = value[k]
        elif isinstance(value, dict) and k in value:
            value = value[k]
        else:
            raise KeyError("/".join(map(str, path)))
    return value


def _rule_mean_sd(rule: dict, figures: dict, which: str):
    """``(mean, sd)`` of the figure that ``rule[which]`` names; its SD from ``rule[which + "_sd"]`` when given."""
    mean, sd = _mean_sd(_get(figures, rule[which]))
    if rule.get(f"{which}_sd") is not None and mean is not None:
        sd = _mean_sd(_get(figures, rule[f"{which}_sd"]))[0]
    return mean, sd


def _judge_better(rule: dict, figures: dict) -> Verdict:
    (ma, sa), (mb, sb) = _rule_mean_sd(rule, figures, "a"), _rule_mean_sd(rule, figures, "b")
    if ma is None or mb is None:
        return Verdict(UNTESTABLE, "–", f"{rule['a']} or {rule['b']} is not a number in this run")
    sign = -1.0 if rule.get("lower") else 1.0
    diff = sign * (ma - mb)
    diff = 0.0 if abs(diff) < 1e-12 * max(1.0, abs(ma), abs(mb)) else diff   # float noise
    spread = max(sa or 0.0, sb or 0.0)
    ours = f"{_f(ma)} vs {_f(mb)}"
    p = _get(figures, rule["p"]) if rule.get("p") else None
    alpha = float(rule.get("alpha", 0.05))
    if diff > spread and (p is None or (is_number(p) and p < alpha)):
        why = f"better by {_f(diff)}, more than the spread over repeats {_f(spread)}"
        return Verdict(HOLDS, ours, why + (f", paired p = {fmt_p(p)}" if p is not None else ""))
    if diff <= 0:
        why = (f"{'higher' if rule.get('lower') else 'lower'} by {_f(-diff)}, not better" if diff < 0
               else "no difference")
    elif diff <= spread:
        why = f"difference {_f(diff)} within the spread over repeats {_f(spread)}"
    else:
        why = f"paired p = {fmt_p(p)}, not below {alpha:g}"
    return Verdict(FAILS, ours, why)


def _judge_best_of(rule: dict, figures: dict) -> Verdict:
    ma, sa = _rule_mean_sd(rule, figures, "a")
    sign = -1.0 if rule.get("lower") else 1.0
    rivals = []
    for other in rule["others"]:
        mo, so = _mean_sd(_get(figures, other))
        if mo is not None:
            rivals.append((sign * (ma - mo), max(sa or 0.0, so or 0.0), other, mo))
    if ma is None or not rivals:
        return Verdict(UNTESTABLE, "–", "no numbers to compare in this run")
    margin, spread, name, mo = min(rivals)
    label = name.split("::")[-1] if isinstance(name, str) else str(name[-1])
    ours = f"{_f(ma)} vs {_f(mo)} ({label})"
    if margin > spread:
        return Verdict(HOLDS, ours, f"ahead of the strongest rival, {label}, by {_f(margin)}, more than "
                                    f"the spread over repeats {_f(spread)}")
    why = (f"{label} is ahead by {_f(-margin)}" if margin < 0 else
           f"ahead of {label} by only {_f(margin)}, within the spread over repeats {_f(spread)}")
    return Verdict(FAILS, ours, why)


def _judge_within(rule: dict, figures: dict) -> Verdict:
    m, _ = _mean_sd(_get(figures, rule["value"]))
    target, tol = float(rule["target"]), float(rule["tolerance"])
    if m is None:
        return Verdict(UNTESTABLE, "–", f"{rule['value']} is not a number in this run")
    ok = abs(m - target) <= tol
    return Verdict(HOLDS if ok else FAILS, _f(m),
                   f"{'within' if ok else 'outside'} ± {_f(tol)} of the paper's {_f(target)}")


def _judge_threshold(rule: dict, figures: dict) -> Verdict:
    kind = rule["kind"]
    m, _ = _mean_sd(_get(figures, rule["value"]))
    thr = float(rule["threshold"])
    if m is None:
        return Verdict(UNTESTABLE, "–", f"{rule['value']} is not a number in this run")
    ok = m >= thr if kind == "at_least" else m <= thr
    word = "at least" if kind == "at_least" else "at most"
    fmt_v = fmt_p if rule.get("p_value") else _f
    what = f"{rule['what']}: {fmt_v(m)}, " if rule.get("what") else ""
    return Verdict(HOLDS if ok else FAILS, fmt_v(m),
                   f"{what}{'' if ok else 'not '}{word} {fmt_v(thr)}")


def _judge_member(rule: dict, figures: dict) -> Verdict:
    items = _get(figures, rule["value"]) or []
    inside = rule["item"] in items
    ok = (not inside) if rule.get("negate") else inside
    listed = ", ".join(map(str, items)) or "none"
    return Verdict(HOLDS if ok else FAILS, listed,
                   f"{rule['item']} {'is' if inside else 'is not'} among them")


def _judge_untestable(rule: dict, figures: dict) -> Verdict:
    return Verdict(UNTESTABLE, "–", rule.get("reason") or "the book's data cannot test it")


_JUDGES = {"untestable": _judge_untestable, "better": _judge_better, "best_of": _judge_best_of,
           "within": _judge_within, "at_least": _judge_threshold, "at_most": _judge_threshold,
           "member": _judge_member}


def judge(rule: dict, figures: dict) -> Verdict:
    """One claim's verdict from its rule and the chapter's ``figures`` (see the module docstring); a figure
    the rule names but the run did not record makes the claim not testable here."""
    kind = rule.get("kind")
    if not isinstance(kind, str) or kind not in _JUDGES:
        raise ValueError(f"unknown rule kind {kind!r}; expected one of {RULE_KINDS}")
    try:
        return _JUDGES[kind](rule, figures)
    except KeyError as err:
        return Verdict(UNTESTABLE, "–", f"this run recorded no {err.args[0]!r}")


def evaluate(results: dict | None = None, ledger: dict | None = None, parts=None) -> pd.DataFrame:
    """Every claim of ``ledger`` (default ``book/claims.yml``) judged on ``results`` (default: this build's
    results JSON, :func:`cellbook.results.load_all`). One row per claim, columns :data:`COLUMNS`."""
    results = load_all() if results is None else results
    ledger = load_ledger() if ledger is None else ledger
    rows = []
    for part, block in ledger.items():
        if parts is not None and part not in parts:
            continue
        for c in (block or {}).get("claims") or []:
            payload = results.get(c["chapter"])
            if payload is None:
                v = Verdict(UNTESTABLE, "–", f"chapter {c['chapter']} has not run in this build")
            else:
                profile = (payload.get("provenance") or {}).get("profile")
                need = c.get("needs_profile")
                if need and profile != need:
                    v = Verdict(UNTESTABLE, "–", f"needs the `{need}` profile; this build ran `{profile}`")
                else:
                    v = judge(c["rule"], payload.get("figures") or {})
            rows.append({"part": part, "id": c["id"], "claim": c["claim"], "paper": str(c.get("paper", "")),
                         "ours": v.ours, "verdict": v.verdict, "reason": v.reason, "chapter": c["chapter"]})
    return pd.DataFrame(rows, columns=COLUMNS)


def counts(table: pd.DataFrame) -> dict:
    """``{verdict: n}`` for the three verdicts (zeros included)."""
    return {v: int((table["verdict"] == v).sum()) for v in VERDICTS}


def _html(table: pd.DataFrame, link: str | None) -> str:
    body = []
    for _, r in table.iterrows():
        chapter = html.escape(r["chapter"])
        where = f'<a href="{html.escape(link.format(notebook=r["chapter"]))}">{chapter}</a>' if link else chapter
        badge = {HOLDS: "holds", FAILS: "fails", UNTESTABLE: "untestable"}[r["verdict"]]
        body.append(f'<tr><td class="text">{html.escape(r["claim"])}<br><small>{where}</small></td>'
                    f'<td class="text">{html.escape(r["paper"])}</td><td class="text">{html.escape(r["ours"])}</td>'
                    f'<td class="text"><span class="cellbook-verdict {badge}">{html.escape(r["verdict"])}</span>'
                    f'<br><small>{html.escape(r["reason"])}</small></td></tr>')
    return ('<div class="cellbook-table cellbook-claims"><table><thead><tr><th class="text">claim</th>'
            '<th class="text">paper</th><th class="text">ours</th><th class="text">verdict</th></tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def ledger_table(results: dict | None = None, part: str | None = None, link: str | None = "../{notebook}.html"):
    """The ledger as the page shows it (``IPython.display.HTML``): one table per part, or ``part``'s alone."""
    table = evaluate(results, parts=None if part is None else [part])
    return _display_html(_html(table, link))


def part_table(part: str, rec=None, results: dict | None = None):
    """``part``'s claims, for the end of its last chapter: this build's results, with the chapter that is
    running (``rec``, a :class:`~cellbook.results.Recorder` not saved yet) read from ``rec`` itself."""
    results = dict(load_all() if results is None else results)
    if rec is not None:
        results[rec.name] = rec.to_dict()
    table = evaluate(results, parts=[part])
    if rec is not None:
        rec.table("claims", table, index=False)
        rec["claims"] = counts(table)
    return _display_html(_html(table, link="../{notebook}.html"))


def takeaways(table: pd.DataFrame, total_seconds: dict | None = None) -> str:
    """The summary page's take-aways (Markdown) from :func:`evaluate`'s table: per paper, which claims hold,
    which do not and which cannot be tested here; then the run time of each profile."""
    lines = []
    for part, rows in table.groupby("part", sort=False):
        title = PARTS.get(part, part).split(" - ")[0]
        said = []
        for verdict, label in ((HOLDS, "holds"), (FAILS, "does not hold"), (UNTESTABLE, "not testable here")):
            names = rows.loc[rows["verdict"] == verdict, "claim"].tolist()
            if names:
                said.append(f"*{label}*: " + "; ".join(n.rstrip(".") for n in names))
        lines.append(f"- **{title}.** " + (". ".join(said) + "." if said else "no claim in the ledger."))
    for prof, secs in (total_seconds or {}).items():
        took = f"{fmt(secs / 60, 2)} min" if secs >= 120 else f"{fmt(secs)} s"
        lines.append(f"- The notebooks run with the `{prof}` profile took **{took}** in all "
                     "(as timed by `cellbook run`).")
    return "\n".join(lines)
