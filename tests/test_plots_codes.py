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


def test_component_network_numbers_at_most_max_labels_terms_and_names_them_in_a_key():
    from cellbook import plots

    g = _graph()
    fig = cplots.component_network(g, title="t", max_labels=12)
    net, key = fig.axes
    numbers = [t.get_text() for t in net.texts if t.get_bbox_patch() is not None]   # numbers have a white backing
    assert numbers == [str(i) for i in range(1, 13)]
    lines = [t.get_text() for t in key.texts]
    assert len(lines) == 12 and lines[0].startswith("1. shared (C0, C1)")      # most-linked term first
    assert "49 terms; the 12 numbered terms are named below" in net.get_title()
    assert fig.get_size_inches()[0] == plots.COLUMN_IN                        # drawn at the column's width
    assert plots.min_text_px(fig) >= plots.MIN_FONT_PT * plots.DPI / 72 - 1e-6
    plt.close(fig)


def test_labelled_terms_prefers_shared_terms_then_small_p():
    g = _graph()
    nx.set_edge_attributes(g, 0.5, "p")
    g.edges["C3", "GO_TERM_3_5"]["p"] = 1e-9
    assert cplots.labelled_terms(g, 3)[:2] == ["GO_SHARED", "GO_TERM_3_5"]
    assert len(cplots.labelled_terms(g, 100)) == 49


def test_noise_sweep_gives_each_model_its_own_marker_and_line_style():
    import pandas as pd

    from cellbook import metrics

    models = ["den", "ctrl", "lr"]
    runs = pd.DataFrame([{"model": m, "test noise SD": sd, "fold": f, "accuracy": 0.9 - sd * (i + 1) / 10 + f / 100}
                         for f in range(3) for i, m in enumerate(models) for sd in (0.0, 0.5, 1.0)])
    summary = metrics.summarize(runs, by=["model", "test noise SD"], metrics=["accuracy"])
    fig = cplots.noise_sweep(summary, runs, models, "ctrl", title="t")
    left, right = fig.axes
    assert "(3 folds)" in left.get_title()
    lines = [c.lines[0] for c in left.containers]                               # each model's data line
    assert [c.get_label() for c in left.containers] == models
    assert len({ln.get_marker() for ln in lines}) == 3 and len({ln.get_linestyle() for ln in lines}) == 3
    drawn = [ln for ln in right.get_lines() if len(ln.get_xdata()) == 3]
    assert len(drawn) == 2                                                      # every model but the control
    np.testing.assert_allclose(sorted(ln.get_ydata()[-1] for ln in drawn), [-0.1, 0.1])
    assert len(right.collections) == 2                                          # a band per difference
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


def test_network_table_lists_every_link_with_the_figure_numbers():
    g = _graph()
    nx.set_edge_attributes(g, 0.01, "p")
    t = cplots.network_table(g, max_labels=3)
    assert len(t) == g.number_of_edges() == 50
    assert list(t.columns) == ["component", "no.", "term", "genes in common", "p (adjusted)"]
    assert t["component"].iloc[0] == "C0" and t["component"].iloc[-1] == "C5"      # components in number order
    assert sorted(t["no."].dropna().astype(int).unique()) == [1, 2, 3]
    assert set(t.loc[t["term"] == "shared", "no."]) == {1}                           # the shared term is number 1


def test_show_networks_displays_each_figure_and_its_table(monkeypatch):
    shown = []
    monkeypatch.setattr(cplots, "display", lambda obj: shown.append(obj))
    g = _graph()
    cplots.show_networks({"GO": (g, 0.01), "Reactome": (g, 0.05)})
    kinds = [type(o).__name__ for o in shown]
    assert kinds == ["Figure", "HTML", "Figure", "HTML"]
    assert "Reactome: every link of the network" in shown[3].data
    assert "(Bonferroni ≤ 0.05)" in shown[2].axes[0].get_title()
    assert not plt.get_fignums()                                                   # closed after display
