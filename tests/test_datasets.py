import numpy as np
import pytest
import scipy.sparse as sp

from cellbook import datasets
from cellbook.datasets import DatasetNotFoundError, locate
from cellbook.results import Recorder, load


def test_missing_dataset_error_names_paths_env_and_source(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLBOOK_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("CELLBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DatasetNotFoundError) as err:
        locate("vangalen2019_bm_seqwell")
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "vangalen2019_bm_seqwell" / "vangalen2019_bm_seqwell.h5ad") in msg
    assert str(tmp_path / "cache" / "vangalen2019_bm_seqwell") in msg
    assert "CELLBOOK_DATA" in msg and "GSE116256" in msg and "cellbook data fetch vangalen2019_bm_seqwell" in msg
    # an explicit path is the only place looked at: the message says so and names only it
    with pytest.raises(DatasetNotFoundError) as err:
        locate("vangalen2019_bm_seqwell", path=tmp_path / "given")
    msg = str(err.value)
    assert f"path={str(tmp_path / 'given')!r} does not exist" in msg
    assert str(tmp_path / "nowhere") not in msg.split("leave it out")[0]


def test_search_order_path_then_env_then_cache(tmp_path, monkeypatch):
    name, fname = "tcga6_rnasum_counts", "tcga6_rnasum_counts.h5ad"
    env_dir, cache, given = tmp_path / "env", tmp_path / "cache", tmp_path / "given"
    for d in (env_dir / name, cache / name, given):
        d.mkdir(parents=True)
        (d / fname).write_text("x")
    monkeypatch.setenv("CELLBOOK_DATA", f"{tmp_path / 'empty'}:{env_dir}")
    monkeypatch.setenv("CELLBOOK_CACHE", str(cache))
    assert locate(name, path=given) == given / fname
    assert locate(name, path=given / fname) == given / fname
    assert locate(name) == env_dir / name / fname
    monkeypatch.delenv("CELLBOOK_DATA")
    assert locate(name) == cache / name / fname


def test_folder_dataset_needs_its_marker(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("CELLBOOK_CACHE", str(tmp_path / "cache"))
    (tmp_path / "stemcell_passage_phase").mkdir()
    with pytest.raises(DatasetNotFoundError):
        locate("stemcell_passage_phase")
    (tmp_path / "stemcell_passage_phase" / "metadata.csv").write_text("file\n")
    assert locate("stemcell_passage_phase") == tmp_path / "stemcell_passage_phase"


def test_checksum_mismatch_is_an_error(tmp_path):
    f = tmp_path / "vangalen2019_bm_seqwell.h5ad"
    f.write_text("not the real file")
    with pytest.raises(ValueError, match="sha256"):
        datasets.info_for("vangalen2019_bm_seqwell", f)


def test_unknown_dataset_and_source():
    with pytest.raises(KeyError, match="unknown dataset"):
        datasets.get("nope")
    with pytest.raises(ValueError, match="source=.nope. is not valid: it must be one of .vangalen2019."):
        datasets.load_scrna("nope")


def test_synthetic_fallback_is_labelled(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("CELLBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DatasetNotFoundError):
        datasets.load_scrna("vangalen2019", fallback="error")
    with pytest.warns(UserWarning, match="SYNTHETIC"):
        adata = datasets.load_scrna("vangalen2019", fallback="synthetic")
    assert adata.uns["cellbook_data"]["real"] is False
    assert "SYNTHETIC" in adata.uns["cellbook_data"]["title"]


@pytest.mark.parametrize("bad, match", [
    (np.array([[1.0, np.nan]]), "NaN"),
    (np.array([[1.0, -2.0]]), "negative"),
    (np.array([[1.5, 2.0]]), "non-integer"),
])
def test_check_counts_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        datasets.check_counts(sp.csr_matrix(bad))


def test_real_vangalen_loader(data_root, monkeypatch):
    monkeypatch.setenv("CELLBOOK_DATA", str(data_root))
    adata = datasets.vangalen2019()
    assert adata.shape == (3641, 27899)
    assert adata.obs["cell_type"].nunique() == 15
    assert adata.uns["cellbook_data"]["real"] is True
    assert adata.uns["cellbook_data"]["sha256"].startswith("dcdf56c0")
    assert sp.issparse(adata.X) and float(adata.X.sum()) == float(adata.layers["counts"].sum())


def test_real_gse194122_starter(data_root, monkeypatch):
    monkeypatch.setenv("CELLBOOK_DATA", str(data_root))
    adata = datasets.gse194122(starter=True)
    assert adata.shape == (600, 1000)
    assert set(adata.obs["donor"]) == {"donor1", "donor2"}


def test_recorder_writes_json_with_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLBOOK_RESULTS", str(tmp_path))
    rec = Recorder("demo/x", profile="quick", device="cpu", seed=3)
    rec["accuracy"] = np.float32(0.5)
    rec["nan"] = float("nan")
    rec.headline("accuracy", 0.5, paper=0.9)
    rec.data({"name": "d", "source": "s", "path": None, "sha256": "ab", "real": True})
    path = rec.save(display=False)
    assert path == tmp_path / "demo" / "x.json"
    out = load("demo/x")
    assert out["figures"]["accuracy"] == 0.5 and out["figures"]["nan"] is None
    assert out["figures"]["headline"][0]["paper"] == 0.9
    prov = out["provenance"]
    assert {"commit", "data", "profile", "device", "wall_s", "versions", "seed"} <= set(prov)
    assert prov["device"] == "cpu" and prov["versions"]["torch"].startswith("2.")
    with pytest.raises(FileNotFoundError, match="cellbook run"):
        load("demo/missing")
