"""Part III figures: the component-to-term network keeps clusters apart and labels legible."""
import matplotlib
import networkx as nx
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cellbook.plots import codes as cplots  # noqa: E402


def _graph():
    g = nx.Graph()
    for c in range(6):
        g.add_node(f"C{c}", kind="component")
        for t in range(8):
            g.add_node(f"GO_TERM_{c}_{t}", kind="term")
            g.add_edge(f"C{c}", f"GO_TERM_{c}_{t}")
    g.add_node("GO_SHARED", kind="term")
    g.add_edges_from([("C0", "GO_SHARED"), ("C1", "GO_SHARED")])
    return g


def test_network_layout_separates_components_and_rings_their_terms():
    g = _graph()
    pos = cplots.network_layout(g)
    assert all(np.allclose(pos[k], v) for k, v in cplots.network_layout(g).items())   # deterministic
    comps = [f"C{c}" for c in range(6)]
    gaps = [np.linalg.norm(pos[a] - pos[b]) for i, a in enumerate(comps) for b in comps[i + 1:]]
    assert min(gaps) >= 0.99                                          # one grid cell apart at least
    for c in comps:                                                   # own terms on a ring around their component
        d = [np.linalg.norm(pos[t] - pos[c]) for t in g.neighbors(c) if g.degree(t) == 1]
        assert np.allclose(d, d[0]) and d[0] < 0.5
    pts = np.array(list(pos.values()))
    assert len(np.unique(pts.round(6), axis=0)) == len(pts)           # no two nodes on one spot


def test_component_network_draws_every_label_within_the_cap():
    fig = cplots.component_network(_graph(), title="t", max_labels=20)
    texts = [t for t in fig.axes[0].texts if t.get_bbox_patch() is not None]   # term labels have a white backing
    assert len(texts) == 20 and "(20 of 49 terms labelled)" in fig.axes[0].get_title()
    plt.close(fig)


def test_rep_vs_gep_reports_the_correlations_it_draws():
    import pytest

    rng = np.random.default_rng(0)
    gep = rng.normal(5, 2, size=(20, 300))
    rep = gep + rng.normal(0, 0.5, size=gep.shape)
    fig = cplots.rep_vs_gep(gep, rep, sample=3)
    left, right = fig.axes[0], fig.axes[1]
    r3 = np.corrcoef(gep[3], rep[3])[0, 1]
    assert f"r = {r3:.3f}" in left.get_title()
    assert len(left.collections[0].get_offsets()) == 300          # every gene of that sample
    assert f"all 20 test samples: r = {np.corrcoef(gep.ravel(), rep.ravel())[0, 1]:.3f}" in right.get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="same shape"):
        cplots.rep_vs_gep(gep, rep[:, :10])
