"""Coarse lineages of cell-type labels, for checks across datasets whose fine labels differ."""
from __future__ import annotations

import numpy as np

# Coarse lineages shared by the van Galen 2019 bone-marrow labels and GSE194122's fine labels, for
# cross-dataset checks (labels not listed map to None and are left out of the comparison).
LINEAGES_VANGALEN = {
    "HSC": "stem/progenitor", "Prog": "stem/progenitor", "GMP": "myeloid", "ProMono": "myeloid", "Mono": "myeloid",
    "cDC": "dendritic", "pDC": "dendritic", "earlyEry": "erythroid", "lateEry": "erythroid", "ProB": "B",
    "B": "B", "Plasma": "B", "T": "T/NK", "CTL": "T/NK", "NK": "T/NK",
}
LINEAGE_RULES_GSE194122 = [  # (whole word of the GSE194122 label, lineage), first match wins
    ("HSC", "stem/progenitor"), ("MK/E", "stem/progenitor"), ("G/M", "myeloid"), ("Mono", "myeloid"),
    ("cDC1", "dendritic"), ("cDC2", "dendritic"), ("pDC", "dendritic"), ("Proerythroblast", "erythroid"),
    ("Erythroblast", "erythroid"), ("Normoblast", "erythroid"), ("Reticulocyte", "erythroid"), ("B", "B"),
    ("Plasma", "B"), ("Plasmablast", "B"), ("NK", "T/NK"), ("ILC", "T/NK"), ("ILC1", "T/NK"), ("T", "T/NK"),
    ("MAIT", "T/NK"), ("gdT", "T/NK"),
]


def to_lineage(labels, mapping=None) -> np.ndarray:
    """Map cell-type labels to coarse lineages: a dict (exact labels) or ``(word, lineage)`` rules.

    With ``mapping=None`` the van Galen dict is tried first, then the GSE194122 rules (matched on whole
    words, so "integrinB7+" is not "B"); labels that match nothing (e.g. "Lymph prog") give None.
    """
    out = []
    for lab in np.asarray(labels).astype(str):
        if isinstance(mapping, dict):
            out.append(mapping.get(lab))
            continue
        if mapping is None and lab in LINEAGES_VANGALEN:
            out.append(LINEAGES_VANGALEN[lab])
            continue
        words = set(lab.split())
        rules = LINEAGE_RULES_GSE194122 if mapping is None else mapping
        out.append(next((lin for key, lin in rules if key in words), None))
    return np.array(out, dtype=object)
