"""cellbook.report (display helpers, results summary tables) and cellbook.plots.report."""
import json

import numpy as np
import pandas as pd
import pytest

from cellbook import report


def _payload(headline, profile="quick", wall=1.5, device="cpu"):
    return {"notebook": "x", "figures": {"headline": headline} if headline is not None else {},
            "tables": {}, "provenance": {"profile": profile, "device": device, "wall_s": wall}}


RESULTS = {
    "part1/03_models": _payload([
        {"metric": "CNN ensemble accuracy", "ours": 0.8, "paper": 0.9143, "note": "macro-F1 0.7", "part": "part1"},
        {"metric": "test split", "ours": "donor held out", "paper": None, "note": "", "part": "part1"},
    ]),
    "part1/01_data": _payload(None),
    "part3/02_codes": _payload([{"metric": "test MSE", "ours": 0.22, "paper": 0.11, "note": "lower is better",
                                 "part": "part3"},
                                {"metric": "accuracy", "ours": "0.85 ± 0.02", "paper": "89.56 ± 3.09 %",
                                 "note": "", "part": "part3"}], profile="full", device="cuda"),
}


def test_fmt():
    assert report.fmt(10032) == "10,032"
    assert report.fmt(np.int64(7022)) == "7,022"
    assert report.fmt(0.91234) == "0.912"
    assert report.fmt(0.91234, 2) == "0.91"
    assert report.fmt(3.0) == "3"
    assert report.fmt(12345.6) == "12,346"
    assert report.fmt(1.5e-7) == "1.50e-07"
    assert report.fmt(None) == "–"
    assert report.fmt(float("nan")) == "–"
    assert report.fmt("n/a") == "n/a"
    assert report.fmt(True) == "True"
    assert report.pm(0.9123, 0.0111) == "0.912 ± 0.011"
    assert report.pm(0.75, 0.00527) == "0.750 ± 0.005"      # mean and SD share their decimals
    assert report.pm(21.32, 1.09) == "21.3 ± 1.1"
    assert report.pm(0.75, None) == "0.75"
    with pytest.raises(ValueError, match="digits"):
        report.fmt(1.0, 0)


def test_as_number():
    assert report.as_number(0.5) == 0.5 and report.as_number(np.float32(2.0)) == 2.0
    assert report.as_number("0.912 ± 0.011") == pytest.approx(0.912)
    assert report.as_number("89.56 ± 3.09 %") == pytest.approx(0.8956)
    assert report.as_number("89.56% +/- 3.09%") == pytest.approx(0.8956)
    for text in ("0.30 -> 0.11", "B -> T (12%)", "not tested", None, True, float("nan"), "0.9"):
        assert report.as_number(text) is None, text


def test_collapsible_wraps_a_dataframe():
    df = pd.DataFrame({"type": ["B", "T"], "acc": [0.91234, 0.5]})
    out = report.collapsible(df, "Accuracy per type", index=False)
    markup = out.data
    assert markup.startswith('<details class="cellbook-collapsible">')
    assert "<summary" in markup and "Accuracy per type (2 rows)" in markup
    assert "0.912" in markup and "0.91234" not in markup      # floats formatted by fmt
    assert markup.count("<td ") == 4                          # 2 rows x 2 columns
    assert " open" in report.collapsible(df, "x", open=True).data
    assert "(1 row)" in report.collapsible(df.head(1), "one").data
    assert report.collapsible("<table></table>", "raw").data.count("<table></table>") == 1
    assert "&lt;b&gt;" in report.collapsible(df, "<b>").data   # summary text is escaped


def test_collapsible_and_caption_reject_bad_input():
    with pytest.raises(ValueError, match="summary"):
        report.collapsible(pd.DataFrame({"a": [1]}), "  ")
    with pytest.raises(ValueError, match="DataFrame"):
        report.collapsible([1, 2, 3], "a list")
    with pytest.raises(ValueError, match="text"):
        report.caption("")


def test_caption():
    assert "<strong>Figure 2.</strong> Accuracy" in report.caption("Accuracy per type.", n=2).data
    assert "<strong>Table.</strong>" in report.caption("x", kind="Table").data


def test_headline_table_rows_ratio_and_missing_parts():
    df = report.headline_table(RESULTS)
    assert list(df.columns) == report.HEADLINE_COLUMNS
    assert list(df["part"]) == ["part1", "part1", "part2", "part3", "part3"]   # part order, part2 filled in
    row = df[df["metric"] == "CNN ensemble accuracy"].iloc[0]
    assert row["ours / paper"] == pytest.approx(0.8 / 0.9143)
    assert row["profile"] == "quick" and row["notebook"] == "part1/03_models"
    assert pd.isna(df[df["metric"] == "test split"].iloc[0]["ours / paper"])   # text value: no ratio
    missing = df[df["part"] == "part2"].iloc[0]
    assert missing["metric"] == report.NOT_RUN and missing["notebook"] == ""
    assert df[df["part"] == "part3"].iloc[0]["profile"] == "full"
    assert len(report.headline_table(RESULTS, include_missing=False)) == 4
    assert df[df["metric"] == "accuracy"].iloc[0]["ours / paper"] == pytest.approx(0.85 / 0.8956)
    empty = report.headline_table({})
    assert list(empty["metric"]) == [report.NOT_RUN] * 3
    no_headline = report.headline_table({"part1/01_data": _payload(None)})
    assert list(no_headline["metric"]) == [report.NO_HEADLINE, report.NOT_RUN, report.NOT_RUN]


def test_headline_table_rejects_bad_input():
    with pytest.raises(ValueError, match="dict"):
        report.headline_table([1, 2])
    with pytest.raises(ValueError, match="part1/x"):
        report.headline_table({"part1/x": "not a payload"})


def test_headline_html():
    df = report.headline_table(RESULTS)
    markup = report.headline_html(df).data
    assert markup.count("<tr>") == len(df) + 1                        # header + one row per headline
    assert '<a href="../part1/03_models.html">part1/03_models</a>' in markup
    assert "<td>0.8</td><td>0.914</td><td>0.875</td>" in markup      # ours, paper, ratio via fmt
    assert "[full]" in markup and "[quick]" in markup                # mixed profiles are named
    plain = report.headline_html(df[df["part"] == "part1"], link=None).data
    assert "<a " not in plain and "[quick]" not in plain
    with pytest.raises(ValueError, match="headline_table"):
        report.headline_html(pd.DataFrame({"a": [1]}))


def test_part_status():
    st = report.part_status(RESULTS).set_index("part")
    assert st.loc["part1", "notebooks run"] == 2 and st.loc["part1", "headline rows"] == 2
    assert st.loc["part2", "profiles"] == report.NOT_RUN
    assert st.loc["part3", "profiles"] == "full"


def test_runtime_table_and_load_run(tmp_path):
    assert report.load_run(tmp_path) == {}
    run = {"profile": "quick", "device": "auto", "seconds": {"part1/01_data": 11.1, "part2/01_x": 4.0}}
    (tmp_path / "_run.json").write_text(json.dumps(run))
    assert report.load_run(tmp_path) == run
    df = report.runtime_table(report.load_run(tmp_path), RESULTS).set_index("notebook")
    assert df.loc["part1/01_data", "seconds"] == 11.1 and df.loc["part1/01_data", "wall_s"] == 1.5
    assert df.loc["part2/01_x", "profile"] == "quick"               # no results: profile of the run
    assert df.loc["part3/02_codes", "device"] == "cuda"             # from the notebook's provenance
    assert pd.isna(df.loc["part3/02_codes", "seconds"])
    (tmp_path / "_run.json").write_text("{broken")
    with pytest.raises(ValueError, match="_run.json"):
        report.load_run(tmp_path)
    with pytest.raises(ValueError, match="_run.json"):
        report.runtime_table(["not", "a", "dict"])


def test_runtime_by_setting_keeps_cpu_and_gpu_runs_apart(tmp_path):
    from cellbook.layout import record_run as _record_run

    base = {"device_requested": "auto", "started_utc": "t", "finished_utc": "t", "run_id": "r"}
    _record_run(tmp_path, "part1/01_data", {**base, "seconds": 8.5, "profile": "quick", "device": "cpu", "gpu": None})
    _record_run(tmp_path, "part1/02_models",
                {**base, "seconds": 14.0, "profile": "quick", "device": "cpu", "gpu": None})
    _record_run(tmp_path, "part1/01_data", {**base, "seconds": 10.2, "profile": "full", "device": "cuda",
                                            "gpu": "NVIDIA H200"})
    df = report.runtime_by_setting(report.load_run(tmp_path / "results")).set_index("notebook")
    assert list(df.columns) == ["quick on cpu", "full on cuda (NVIDIA H200)"]
    assert df.loc["part1/01_data"].tolist() == [8.5, 10.2]
    assert np.isnan(df.loc["part1/02_models", "full on cuda (NVIDIA H200)"])
    assert df.loc["total"].tolist() == [22.5, 10.2]
    assert report.load_run(tmp_path / "results")["seconds"]["part1/01_data"] == 10.2   # the latest run, as before
    assert report.runtime_by_setting({}).empty
    with pytest.raises(ValueError, match="_run.json"):
        report.runtime_by_setting("nope")


def test_lower_is_better():
    assert report.lower_is_better("PCA-30 + RF, error rate")
    assert report.lower_is_better("Test MSE, epoch 1 -> last")
    assert report.lower_is_better("seconds to classify 96 images")
    assert not report.lower_is_better("CNN: accuracy, random 2:1 split")
    assert not report.lower_is_better("REP ranked 1st by Spearman")
    assert not report.lower_is_better("terrors")                  # whole words only
    assert not report.lower_is_better("REP ranked 1st by MSE (Fig. 2c)")
    assert not report.lower_is_better("Unseen tissue: REP closer to own GEP (MSE)")
    assert report.lower_is_better("REP-GEP closer than nearest GEP, Wilcoxon p (Spearman / MSE)")


def test_ours_vs_paper_figure():
    import matplotlib.pyplot as plt

    from cellbook.plots.report import ours_vs_paper

    fig = ours_vs_paper(report.headline_table(RESULTS))
    ax = fig.axes[0]
    assert len(ax.patches) == 3                                       # three rows with a ratio
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "test MSE (lower is better)" in labels and "CNN ensemble accuracy" in labels
    assert sorted(round(p.get_width(), 4) for p in ax.patches) == sorted(
        [round(0.8 / 0.9143, 4), 2.0, round(0.85 / 0.8956, 4)])
    plt.close(fig)
    with pytest.raises(ValueError, match="no row"):
        ours_vs_paper(report.headline_table({}))
    with pytest.raises(ValueError, match="columns"):
        ours_vs_paper(pd.DataFrame({"a": [1]}))


def test_fmt_p_never_prints_zero():
    assert report.fmt_p(0.0) == "< 1e-300"          # underflowed: not "0.0"
    assert report.fmt_p(6.0e-17) == "6.0e-17"
    assert report.fmt_p(0.0412) == "0.041"
    assert report.fmt_p(float("nan")) == "–"
    with pytest.raises(ValueError, match="p-value"):
        report.fmt_p(1.5)
