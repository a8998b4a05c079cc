"""Gene-set over-representation for code components (Part III, Figs. 5-7).

    sets = read_gmt("msigdb_c5.bp.v6.2.symbols.gmt")          # {term: set of UPPER-CASE symbols}
    res = overrepresentation({"C1": genes1, "C2": genes2}, sets, background=measured_genes)
    g = component_term_network(res, column="p_bonferroni", alpha=0.01)

Symbols are matched case-insensitively (Enrichr files upper-case every symbol).  The background
is the genes measured in the expression data that occur in the collection (the README of the
gene-set folder asks for exactly this); set sizes and query sizes are counted inside it.
P-values: hypergeometric upper tail ``P(X >= k)``; Bonferroni and Benjamini-Hochberg adjust over
the terms tested for one query list.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
from scipy.stats import hypergeom

from .validation import Interval, Options, validate_params

P_COLUMNS = Options("p", "p_bonferroni", "p_bh")
ALPHA = Interval(float, 0, 1)


@validate_params({"path": [str, os.PathLike], "min_size": Interval(int, 0, None),
                  "max_size": [None, Interval(int, 0, None)], "encoding": str})
def read_gmt(path, min_size: int = 1, max_size: int | None = None, encoding: str = "utf-8") -> dict[str, frozenset]:
    """Read a GMT file (``name<TAB>description<TAB>gene...`` per line) -> ``{name: frozenset(UPPER genes)}``.

    Sets with fewer than ``min_size`` or more than ``max_size`` genes are skipped.  A term that occurs
    twice is a ``ValueError`` naming it and both lines (a later line must not silently replace an
    earlier set); a file in another encoding (e.g. UTF-16 from Excel) is a ``ValueError`` naming it
    and the encoding (pass ``encoding=`` or convert it to UTF-8).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GMT file {path} does not exist (gene sets ship in $CELLBOOK_DATA/genesets/)")
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding)
    except (UnicodeDecodeError, LookupError) as err:
        guess = ("UTF-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or raw[1:2] == b"\x00" or raw[:1] == b"\x00"
                 else "not " + encoding)
        raise ValueError(f"GMT file {path} cannot be read as {encoding} ({guess}: {err}); convert it to UTF-8 "
                         f"(e.g. `iconv -f UTF-16 -t UTF-8 {path.name} > fixed.gmt`) or pass "
                         f"read_gmt(..., encoding='utf-16')") from None
    if text.startswith("\ufeff"):
        text = text[1:]                                   # a UTF-8 byte-order mark
    sets: dict[str, frozenset] = {}
    first_line: dict[str, int] = {}
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")   # universal newlines, as open() reads
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise ValueError(f"{path}:{lineno}: a GMT line needs a name, a description and genes, "
                             f"tab-separated; got {len(parts)} field(s)")
        name = parts[0]
        if name in first_line:
            raise ValueError(f"{path}: gene set {name!r} occurs twice (lines {first_line[name]} and {lineno}); "
                             f"a term must be unique: delete or rename one of the lines")
        first_line[name] = lineno
        genes = frozenset(g.strip().upper() for g in parts[2:] if g.strip())
        if len(genes) < min_size or (max_size is not None and len(genes) > max_size):
            continue
        sets[name] = genes
    if not sets:
        raise ValueError(f"{path}: no gene set with {min_size}-{max_size or 'any'} genes")
    return sets


def _gene_list(genes, what: str) -> list:
    """``genes`` as a list of symbols; a bare string (iterated letter by letter) or a non-iterable is an error."""
    if isinstance(genes, (str, bytes)):
        raise ValueError(f"{what} is the string {genes[:40]!r}, not a list of genes (a string would be matched "
                         f"letter by letter); pass a list, e.g. [{genes[:12]!r}] or {genes[:12]!r}.split()")
    if isinstance(genes, dict) or not hasattr(genes, "__iter__"):
        raise ValueError(f"{what} must be a list / set / array of gene symbols; got {type(genes).__name__}")
    return list(genes)


def _adjust_bh(p: np.ndarray) -> np.ndarray:
    n = p.size
    if n == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(ranked, 1.0)
    return out


@validate_params({"queries": dict, "gene_sets": dict, "min_overlap": Interval(int, 0, None)})
def overrepresentation(queries: dict, gene_sets: dict, background, min_overlap: int = 1) -> pd.DataFrame:
    """Hypergeometric over-representation of each query list in each gene set.

    Parameters
    ----------
    queries : ``{query name: iterable of symbols}`` (e.g. top-100 genes per code component)
    gene_sets : ``{term: set of symbols}`` (from :func:`read_gmt`)
    background : the symbols measured in the data.  Universe = background ∩ genes of the collection.
    min_overlap : report only terms with at least this many query genes in them.

    Returns one row per (query, term) with ``k`` (overlap), ``set_size``, ``query_size``,
    ``universe``, ``p``, ``p_bonferroni``, ``p_bh`` and ``genes`` (the overlap), sorted by p.
    Adjustment is over every term with >= 1 universe gene, per query.  A query none of whose genes is
    in the universe tests nothing: it is named in a warning and in ``result.attrs["untested_queries"]``
    (an empty table would read as "no enrichment"), and when no query can be tested it is an error.
    """
    queries = {q: _gene_list(g, f"query {q!r}") for q, g in queries.items()}
    gene_sets = {t: set(_gene_list(g, f"gene set {t!r}")) for t, g in gene_sets.items()}
    background = _gene_list(background, "background")
    bg = {str(g).upper() for g in background if str(g).strip()}
    collection = set().union(*gene_sets.values()) if gene_sets else set()
    universe = bg & collection
    if not universe:
        raise ValueError("no gene of the gene-set collection occurs in the data's genes; check that both use "
                         "gene symbols of the same species (the data's var must hold symbols, e.g. "
                         "var['gene_symbol'])")
    sets = {t: s & universe for t, s in gene_sets.items()}
    sets = {t: s for t, s in sets.items() if s}
    M = len(universe)
    rows, untested = [], []
    for q, genes in queries.items():
        qs = {str(g).upper() for g in genes} & universe
        N = len(qs)
        untested += [] if N else [q]
        terms, ks, ns, overl = [], [], [], []
        for t, s in sets.items():
            ov = qs & s
            terms.append(t)
            ks.append(len(ov))
            ns.append(len(s))
            overl.append(ov)
        ks, ns = np.array(ks), np.array(ns)
        p = hypergeom.sf(ks - 1, M, ns, N) if N else np.ones(len(ks))
        p = np.clip(p, 0, 1)
        bonf = np.minimum(p * len(p), 1.0)
        bh = _adjust_bh(p)
        for i in np.where(ks >= max(min_overlap, 1))[0]:
            rows.append({"query": q, "term": terms[i], "k": int(ks[i]), "set_size": int(ns[i]), "query_size": N,
                         "universe": M, "p": float(p[i]), "p_bonferroni": float(bonf[i]), "p_bh": float(bh[i]),
                         "genes": ",".join(sorted(overl[i]))})
    cols = ["query", "term", "k", "set_size", "query_size", "universe", "p", "p_bonferroni", "p_bh", "genes"]
    out = pd.DataFrame(rows, columns=cols).sort_values(["p", "query"]).reset_index(drop=True)
    out.attrs["untested_queries"] = _flag_untested(untested, queries, universe)
    return out


def _flag_untested(untested: list, queries: dict, universe: set) -> list:
    """The queries with no gene in the universe: an error when that is every query, else a warning."""
    if untested and len(untested) == len(queries):
        raise ValueError(f"no gene of any query ({', '.join(map(str, untested[:5]))}"
                         f"{', ...' if len(untested) > 5 else ''}) is among the {len(universe)} genes of the "
                         f"universe (background ∩ gene sets), so nothing can be tested; check that the queries "
                         f"and the background use the same gene symbols")
    if untested:
        warnings.warn(f"overrepresentation: {len(untested)} of {len(queries)} queries have no gene in the universe "
                      f"and test nothing: {', '.join(map(str, untested[:5]))}{', ...' if len(untested) > 5 else ''}",
                      UserWarning, stacklevel=4)
    return untested


@validate_params({"column": P_COLUMNS, "alpha": ALPHA})
def significant(results: pd.DataFrame, column: str = "p_bonferroni", alpha: float = 0.01) -> pd.DataFrame:
    """Rows of :func:`overrepresentation` with ``column <= alpha``."""
    return results[results[column] <= alpha].reset_index(drop=True)


@validate_params({"column": P_COLUMNS, "alpha": ALPHA, "max_terms_per_query": [None, Interval(int, 0, None)]})
def component_term_network(results: pd.DataFrame, column: str = "p_bonferroni", alpha: float = 0.01,
                           max_terms_per_query: int | None = 10):
    """networkx Graph: query nodes (``kind="component"``) linked to their significant terms (``kind="term"``).

    Edges carry ``p`` (the adjusted p-value) and ``k`` (overlap).  At most ``max_terms_per_query``
    terms per query (smallest p first), to keep the picture readable.
    """
    sig = significant(results, column, alpha).sort_values(column)
    if max_terms_per_query:
        sig = sig.groupby("query", sort=False).head(max_terms_per_query)
    g = nx.Graph()
    for _, r in sig.iterrows():
        g.add_node(r["query"], kind="component")
        g.add_node(r["term"], kind="term")
        g.add_edge(r["query"], r["term"], p=float(r[column]), k=int(r["k"]))
    return g


@validate_params({"name": str, "width": Interval(int, 1, None)})
def short_term(name: str, width: int = 38) -> str:
    """``GO_MITOTIC_NUCLEAR_DIVISION`` -> ``mitotic nuclear division`` (shortened for plots)."""
    s = name
    for prefix in ("GO_", "REACTOME_", "WP_", "HALLMARK_"):
        if s.startswith(prefix):
            s = s[len(prefix):]
            break
    s = s.replace("_", " ").lower() if s.isupper() or "_" in s else s
    return s if len(s) <= width else s[: width - 1] + "…"
