"""Write legacy_model.cbm and legacy_model.npz: a tiny model file in the flat-parameter format of commit
37de8e0 (cellbook/annotate.py) and its predictions, for tests/test_classifier_contract.py.

Run from a checkout of that commit:
PYTHONPATH=<that checkout> python tests/data/make_legacy_model.py tests/data
"""
import sys
from pathlib import Path

import numpy as np
import torch

from cellbook.annotate import CellTypeClassifier, save_model


def counts(n: int, g: int, seed: int):
    rng = np.random.default_rng(seed)
    y = np.repeat(["A", "B", "C"], n // 3)
    lam = np.ones((n, g))
    for i, t in enumerate("ABC"):
        lam[y == t, i * 8:(i + 1) * 8] = 8
    return rng.poisson(lam).astype(np.float32), y


def main(out: Path) -> None:
    torch.set_num_threads(1)
    genes = [f"G{j}" for j in range(30)]
    X, y = counts(60, 30, seed=0)
    clf = CellTypeClassifier("mlp", ensemble="joint", k=2, n_genes=20, model_kwargs={"mlp": {"hidden": (16,)}},
                             max_epochs=3, lr=3e-3, batch_size=16, patience=None, device="cpu", seed=4)
    clf.fit(X, y, gene_names=genes)
    save_model(clf, out / "legacy_model.cbm")
    Q, _ = counts(12, 30, seed=1)
    order = list(range(29, -1, -1))              # the query's genes in another order
    qgenes = [genes[i] for i in order]
    np.savez(out / "legacy_model.npz", query=Q[:, order], query_genes=np.array(qgenes),
             proba=clf.predict_proba(Q[:, order], gene_names=qgenes), classes=clf.classes_.astype(str))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
