"""Builders: derive each dataset deterministically from its public raw files.

Every builder has the same signature, ``builder(raw_root, out, raw_files) -> None``:

- ``raw_root`` is a folder laid out like a mirror (``<raw_root>/<RawFile.path>``), for example
  the cache's ``raw/`` folder after a download, or a local copy of the originals;
- ``out`` is an empty folder that receives the dataset exactly as ``CELLBOOK_DATA/<name>/``
  would hold it (the caller makes the write atomic);
- ``raw_files`` are the registry's :class:`~cellbook.datasets.registry.RawFile` entries to use
  (all of them for a full build; a subset for the image sets builds only those frames).

Each module docstring step below is the "How this file was derived" section of the dataset's
README, turned into code.  :func:`content_digest` summarises what a dataset *holds* (counts,
cell and gene order, obs and var, pixels), independent of how the file was encoded, so a
freshly built dataset can be checked against the registry's pin and against a reference copy.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

# anndata and OpenCV are imported where they are used, so that `cellbook data` stays light; pyreadr
# (the raw Ensembl table) is needed only to build a dataset from its raw files.

# ----------------------------------------------------------------------------- digests


def _hash_frame(h, frame: pd.DataFrame) -> None:
    h.update(f"columns={list(map(str, frame.columns))}".encode())
    h.update(f"index={frame.index.name}".encode())
    h.update("\x1f".join(map(str, frame.index)).encode())
    for col in frame.columns:
        s = frame[col]
        kind = "category" if isinstance(s.dtype, pd.CategoricalDtype) else s.dtype.kind
        h.update(f"{col}:{kind}".encode())
        h.update("\x1f".join(map(_canonical, s.astype(object).to_numpy())).encode())


def _canonical(v) -> str:
    """One spelling per value, whatever the numpy / pandas version (``repr(np.float64)`` changed)."""
    if v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and np.isnan(v)):
        return "<NA>"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


def anndata_digest(adata) -> str:
    """sha256 of what an AnnData holds: X (values and sparsity, dtype kind), obs, var, uns["source"].

    Two files with the same digest hold the same counts in the same cell and gene order, with
    the same obs/var columns and values; compression and HDF5 layout do not matter.
    """
    h = hashlib.sha256()
    X = adata.X
    h.update(f"shape={tuple(X.shape)};kind={np.dtype(X.dtype).kind}".encode())
    X = sp.csr_matrix(X)
    X.sum_duplicates()
    X.sort_indices()
    X.eliminate_zeros()
    for arr, dtype in ((X.indptr, np.int64), (X.indices, np.int64), (X.data, np.float64)):
        h.update(np.ascontiguousarray(arr, dtype=dtype).tobytes())
    _hash_frame(h, adata.obs)
    _hash_frame(h, adata.var)
    h.update(json.dumps(adata.uns.get("source", {}), sort_keys=True, default=str).encode())
    return h.hexdigest()


def pixels_digest(img: np.ndarray) -> str:
    """sha256 of decoded pixels (shape, dtype and bytes; channel order as OpenCV decodes it)."""
    img = np.ascontiguousarray(img)
    h = hashlib.sha256(f"{img.shape}|{img.dtype.str}".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def _imread(path: Path) -> np.ndarray:
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ValueError(f"{path}: not a readable image (corrupt download or wrong file)")
    return img


def image_folder_digest(folder: Path, files: list[str] | None = None) -> str:
    """sha256 of an image dataset: ``metadata.csv`` (bytes) and every listed image's pixels."""
    folder = Path(folder)
    meta = folder / "metadata.csv"
    h = hashlib.sha256(meta.read_bytes())
    names = files if files is not None else pd.read_csv(meta)["file"].tolist()
    for rel in names:
        h.update(rel.encode())
        h.update(pixels_digest(_imread(folder / rel)).encode())
    return h.hexdigest()


def content_digest(dataset, path: Path) -> str:
    """The content digest of a dataset found at ``path`` (its main file, or its folder)."""
    path = Path(path)
    if dataset.kind == "anndata":
        import anndata as ad

        return anndata_digest(ad.read_h5ad(path))
    if dataset.kind == "images":
        return image_folder_digest(path)
    if dataset.kind == "files":
        folder = path if path.is_dir() else path.parent
        h = hashlib.sha256()
        for name in sorted(f.path.rsplit("/", 1)[-1] for f in dataset.raw):
            h.update(name.encode())
            h.update(hashlib.sha256((folder / name).read_bytes()).hexdigest().encode())
        return h.hexdigest()
    raise ValueError(f"{dataset.name}: unknown dataset kind {dataset.kind!r}")


def _write_h5ad(adata, out: Path, name: str) -> Path:
    dest = Path(out) / name
    adata.write_h5ad(dest, compression="gzip")
    return dest


def _write_csv(frame: pd.DataFrame, dest: Path) -> None:
    frame.to_csv(dest, index=False, lineterminator="\r\n")  # as the reference files (csv module default)


# ------------------------------------------------------------ vangalen2019_bm_seqwell

_GSE_FILE = re.compile(r"^(GSM\d+)_(.+)\.(dem|anno)\.txt\.gz$")
VANGALEN_OBS_NUMERIC = ("NumberOfReads", "TranscriptomeUMIs", "NumberOfGenes", "CyclingScore")


def _gse116256_pairs(raw_files) -> list[tuple[str, str, str, str]]:
    """(sample, dem GSM, dem path, anno path) in the file-name order of the dem files."""
    dem, anno = {}, {}
    for f in raw_files:
        m = _GSE_FILE.match(f.path.rsplit("/", 1)[-1])
        if not m:
            raise ValueError(f"GSE116256: unexpected raw file name {f.path!r}")
        gsm, sample, kind = m.groups()
        (dem if kind == "dem" else anno)[sample] = (gsm, f.path)
    missing = sorted(set(dem) ^ set(anno))
    if missing:
        raise ValueError(f"GSE116256: samples without both a dem and an anno file: {', '.join(missing)}")
    order = sorted(dem, key=lambda s: dem[s][1].rsplit("/", 1)[-1])
    return [(s, dem[s][0], dem[s][1], anno[s][1]) for s in order]


def _read_dem(raw_root: Path, dem_path: str, header, cells) -> tuple[list, list]:
    """The ``cells`` columns of one ``dem`` matrix (genes x cells, integer counts), read in chunks of
    4000 genes: ``(cells x genes int32 CSR blocks, gene names)``."""
    chunks, gene_names = [], []
    reader = pd.read_csv(raw_root / dem_path, sep="\t", usecols=[header[0], *cells], index_col=0,
                         chunksize=4000)
    for chunk in reader:
        chunk = chunk[cells]
        values = chunk.to_numpy()
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"{dem_path}: non-integer counts")
        chunks.append(sp.csr_matrix(values.T.astype(np.int32)))
        gene_names += chunk.index.astype(str).tolist()
    return chunks, gene_names


def build_vangalen2019(raw_root: Path, out: Path, raw_files) -> None:
    """GSE116256 per-sample ``dem``/``anno`` files -> ``vangalen2019_bm_seqwell.h5ad``.

    1. For each sample read the ``dem`` matrix (genes x cells, tab separated, integer UMI
       counts; the same gene list in every file) and the ``anno`` table (one row per cell).
    2. Keep the cells whose ``PredictionRefined`` is ``normal``.
    3. Transpose to cells x genes, int32 CSR, concatenate in file-name order; obs from the
       annotation, ``cell_type`` = ``CellType``.
    4. Write with gzip compression; no gene filtering, no normalisation, no subsampling.
    """
    import anndata as ad

    raw_root = Path(raw_root)
    blocks, obs_parts, genes = [], [], None
    for sample, gsm, dem_path, anno_path in _gse116256_pairs(raw_files):
        anno = pd.read_csv(raw_root / anno_path, sep="\t", dtype={"Cell": str})
        keep = anno.loc[anno["PredictionRefined"].astype(str) == "normal"]
        header = pd.read_csv(raw_root / dem_path, sep="\t", nrows=0).columns
        unknown = sorted(set(keep["Cell"]) - set(header[1:]))
        if unknown:
            raise ValueError(f"{anno_path}: {len(unknown)} annotated cells are not in {dem_path} "
                             f"(e.g. {', '.join(unknown[:3])})")
        cells = [c for c in header[1:] if c in set(keep["Cell"])]   # the matrix's cell order
        chunks, gene_names = _read_dem(raw_root, dem_path, header, cells)
        if genes is None:
            genes = gene_names
        elif gene_names != genes:
            raise ValueError(f"{dem_path}: its gene list differs from the first sample's")
        blocks.append(sp.hstack(chunks, format="csr", dtype=np.int32))
        a = keep.set_index("Cell").loc[cells]
        donor = sample[:-3] if sample.endswith("-D0") else sample
        obs_parts.append(pd.DataFrame({
            "cell_type": a["CellType"].astype(str).to_numpy(),
            "sample": sample,
            "donor": donor,
            "condition": "AML_diagnosis" if sample.startswith("AML") else "healthy",
            "geo_sample": gsm,
            "PredictionRefined": a["PredictionRefined"].astype(str).to_numpy(),
            "PredictionRF2": a["PredictionRF2"].astype(str).to_numpy(),
            **{c: a[c].to_numpy() for c in VANGALEN_OBS_NUMERIC},
            "CyclingBinary": a["CyclingBinary"].astype(str).to_numpy(),
        }, index=pd.Index(cells)))
    X = sp.vstack(blocks, format="csr", dtype=np.int32)
    obs = pd.concat(obs_parts)
    for col in obs.columns:     # categories in plain sorted order, as in the reference file
        if obs[col].dtype == object:
            obs[col] = obs[col].astype("category")
    var = pd.DataFrame(index=pd.Index(genes, name="Gene"))
    var["n_cells"] = np.asarray((X > 0).sum(axis=0)).ravel().astype(np.int64)
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.uns["source"] = {"branch": "GSE116256_raw", "geo": "GSE116256",
                           "publication": "van Galen et al., Cell 2019, doi:10.1016/j.cell.2019.01.031",
                           "repository": "zhaimaoer/GNBF6010"}
    _write_h5ad(adata, out, "vangalen2019_bm_seqwell.h5ad")


# --------------------------------------------------------------- tcga6_rnasum_counts

TCGA6 = {  # project code -> (name, tissue), in the concatenation order
    "ACC": ("Adrenocortical carcinoma", "adrenal gland"),
    "CHOL": ("Cholangiocarcinoma", "bile duct"),
    "DLBC": ("Lymphoid neoplasm diffuse large B-cell lymphoma", "lymph node (B cell)"),
    "KICH": ("Kidney chromophobe", "kidney"),
    "UCS": ("Uterine carcinosarcoma", "uterus"),
    "UVM": ("Uveal melanoma", "eye (uvea)"),
}


def _read_rds_table(path: Path) -> pd.DataFrame:
    try:
        import pyreadr
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise ImportError("reading the Ensembl .rds gene table needs pyreadr (pip install pyreadr)") from err
    result = pyreadr.read_r(str(path))
    if len(result) != 1:
        raise ValueError(f"{path}: expected one R object, found {len(result)}")
    return next(iter(result.values()))


def build_tcga6(raw_root: Path, out: Path, raw_files) -> None:
    """RNAsum.data (pinned commit) -> ``tcga6_rnasum_counts.h5ad``.

    1. Read the six ``TCGA_<CODE>_Counts.exp.gz`` tables (genes x samples, integer counts);
       check that they list the same genes in the same order and hold only integers.
    2. Concatenate the samples in the order ACC, CHOL, DLBC, KICH, UCS, UVM; transpose; float32.
    3. Label each sample with its file's project; ``patient_id``, ``tss``, ``plate`` and
       ``sample_type_code`` from the barcode.  (The ``Target`` tables are not used for labels.)
    4. Gene annotation: the first row per ``GENEID`` of ``tx_gene_id_105.rds`` gives
       ``gene_symbol``, ``gene_biotype`` and ``chromosome`` ("" where the ID is absent).
    """
    import anndata as ad

    raw_root = Path(raw_root)
    by_name = {f.path.rsplit("/", 1)[-1]: f.path for f in raw_files}
    blocks, barcodes, genes, labels = [], [], None, []
    for code in TCGA6:
        fname = f"TCGA_{code}_Counts.exp.gz"
        if fname not in by_name:
            raise ValueError(f"tcga6: raw file {fname} is missing from the registry entry")
        table = pd.read_csv(raw_root / by_name[fname], sep="\t", index_col=0)
        if genes is None:
            genes = table.index
        elif not table.index.equals(genes):
            raise ValueError(f"{fname}: its gene IDs differ from TCGA_ACC_Counts.exp.gz")
        values = table.to_numpy()
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"{fname}: non-integer counts")
        blocks.append(values.T)
        labels += [code] * table.shape[1]
        barcodes += table.columns.astype(str).tolist()
    X = np.vstack(blocks).astype(np.float32)
    obs = pd.DataFrame({
        "patient_id": [b[:12] for b in barcodes],
        "cancer_type": labels,
        "cancer_type_name": [TCGA6[c][0] for c in labels],
        "tissue": [TCGA6[c][1] for c in labels],
        "study": [f"TCGA-{c}" for c in labels],
        "tss": [b[5:7] for b in barcodes],
        "plate": [b.split("-")[5] for b in barcodes],
        "sample_type_code": [b.split("-")[3][:2] for b in barcodes],
        "cell_type": labels,
    }, index=pd.Index(barcodes, name="sample_id")).astype("category")  # plain sorted categories; var's
    # string columns are left to anndata, which makes them categoricals on write in natural-sort order
    # (both as in the reference file)
    rds = next((p for n, p in by_name.items() if n.endswith(".rds")), None)
    if rds is None:
        raise ValueError("tcga6: the Ensembl gene table (.rds) is missing from the registry entry")
    table = _read_rds_table(raw_root / rds).drop_duplicates("GENEID", keep="first").set_index("GENEID")
    gene_ids = pd.Index(genes.astype(str), name="ensembl_gene_id")
    var = pd.DataFrame(index=gene_ids)
    for col, src in (("gene_symbol", "GENENAME"), ("gene_biotype", "GENEBIOTYPE"), ("chromosome", "SEQNAME")):
        var[col] = table[src].reindex(gene_ids).fillna("").astype(str).to_numpy()
    var["n_samples_nonzero"] = (X > 0).sum(axis=0).astype(np.int32)
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.uns["source"] = {
        "commit": "15bb33cd7f5d241e09bddb8a8311e9638693c4c2",
        "path": "inst/extdata/ref_data/TCGA_<CODE>_Counts.exp.gz", "repository": "umccr/RNAsum.data",
        "value_scale": "raw HTSeq read counts (integers stored as float32), not normalized, not log-transformed"}
    _write_h5ad(adata, out, "tcga6_rnasum_counts.h5ad")


# ------------------------------------------------------ neurips2021_bmmc_cite_starter

STARTER_OBS = ("cell_type", "batch", "Site", "DonorNumber", "is_train", "n_genes_by_counts", "pct_counts_mt",
               "size_factors", "phase", "pseudotime_order_GEX", "pseudotime_order_ADT")


def build_neurips_starter(raw_root: Path, out: Path, raw_files) -> None:
    """The organisers' ``openproblems_bmmc_cite_starter.output_rna.h5ad`` -> the starter dataset.

    1. Read the source h5ad.  2. ``X`` := its ``layers['counts']`` as int32 CSR (the normalised
    ``X`` is dropped).  3. obs: the columns listed in :data:`STARTER_OBS`, with ``Site`` = "site"
    + the digit after ``s`` in ``batch`` and ``DonorNumber`` = "donor" + the digit after ``d``;
    var: ``gene_ids`` and ``feature_types``.  4. Write with gzip compression; nothing removed.
    """
    import anndata as ad

    (f,) = list(raw_files)
    src = ad.read_h5ad(Path(raw_root) / f.path)
    if "counts" not in src.layers:
        raise ValueError(f"{f.path}: no layers['counts'] (is this the organisers' output_rna.h5ad?)")
    counts = sp.csr_matrix(src.layers["counts"])
    if counts.data.size and not np.all(np.mod(counts.data, 1) == 0):
        raise ValueError(f"{f.path}: layers['counts'] holds non-integer values")
    obs = src.obs.copy()
    batch = obs["batch"].astype(str)
    obs["Site"] = pd.Categorical("site" + batch.str.extract(r"^s(\d+)", expand=False))
    obs["DonorNumber"] = pd.Categorical("donor" + batch.str.extract(r"d(\d+)$", expand=False))
    missing = [c for c in STARTER_OBS if c not in obs]
    if missing:
        raise ValueError(f"{f.path}: obs lacks {', '.join(missing)}")
    var = src.var[["gene_ids", "feature_types"]].copy()
    adata = ad.AnnData(X=counts.astype(np.int32), obs=obs[list(STARTER_OBS)].copy(), var=var)
    adata.uns["source"] = {
        "dataset_id": "openproblems_bmmc_cite_starter", "geo": "GSE194122", "organism": "human",
        "path": "resources_test/common/openproblems_bmmc_cite_starter/"
                "openproblems_bmmc_cite_starter.output_rna.h5ad",
        "repository": "openproblems-bio/neurips2021_multimodal_viash"}
    _write_h5ad(adata, out, "neurips2021_bmmc_cite_starter.h5ad")


# ---------------------------------------------------------- stemcell_passage_phase

_FRAME = re.compile(r"^(P\d+)-(\d+)\.tif$")
TILE_H, TILE_W = 384, 512


def stemcell_frame(f) -> tuple[str, int, str]:
    """(passage, frame number, source split) of a Cell-Segmentation raw file entry."""
    name = f.path.rsplit("/", 1)[-1]
    m = _FRAME.match(name)
    if not m:
        raise ValueError(f"stemcell: unexpected raw file name {name!r}")
    split = "test" if "/testset_original/" in f.url else "train"
    return m.group(1), int(m.group(2)), split


def _has_scale_bar(tile_bgr: np.ndarray) -> int:
    corner = tile_bgr[-68:, -124:]
    return int((corner.min(axis=2) >= 250).sum() >= 50)


def build_stemcell(raw_root: Path, out: Path, raw_files) -> None:
    """Cell-Segmentation TIFFs (pinned commit) -> 2 x 2 tiles of 512 x 384 px + ``metadata.csv``.

    1. Frames in source order: the ``train`` folder, then ``test``, each sorted by file name.
    2. Class = the file-name prefix (P2 / P6 / P7); ``binary_label`` = ``early_P2`` or ``late_P6_P7``.
    3. Each 1024 x 768 RGB frame -> tiles (row r, column c) covering x in [512c, 512c+512) and
       y in [384r, 384r+384); lossless PNG ``<passage>-<frame, 2 digits>_r<r>c<c>.png``; no
       resizing, colour or intensity change.
    4. ``contains_scale_bar`` = 1 when tile r1c1 has >= 50 pure-white pixels (min(R,G,B) >= 250)
       in its bottom-right 124 x 68 px corner.
    """
    import cv2

    out = Path(out)
    entries = sorted(raw_files, key=lambda f: (stemcell_frame(f)[2] != "train", f.path.rsplit("/", 1)[-1]))
    rows = []
    for f in entries:
        passage, number, split = stemcell_frame(f)
        img = _imread(Path(raw_root) / f.path)
        if img.shape != (2 * TILE_H, 2 * TILE_W, 3) or img.dtype != np.uint8:
            raise ValueError(f"{f.path}: expected an 8-bit RGB 1024 x 768 frame, got {img.shape} {img.dtype}")
        (out / passage).mkdir(parents=True, exist_ok=True)
        for r in range(2):
            for c in range(2):
                tile = img[TILE_H * r:TILE_H * (r + 1), TILE_W * c:TILE_W * (c + 1)]
                rel = f"{passage}/{passage}-{number:02d}_r{r}c{c}.png"
                if not cv2.imwrite(str(out / rel), tile):
                    raise OSError(f"could not write {out / rel}")
                rows.append({"file": rel, "class": passage,
                             "binary_label": "early_P2" if passage == "P2" else "late_P6_P7",
                             "source_image": f.path.rsplit("/", 1)[-1], "source_split": split,
                             "tile_row": r, "tile_col": c,
                             "contains_scale_bar": _has_scale_bar(tile) if (r, c) == (1, 1) else 0})
    _write_csv(pd.DataFrame(rows), out / "metadata.csv")


# -------------------------------------------------------- hek293a_ht1080_brightfield

_HEK = re.compile(r"^(293A|HT1080)-(\d+)(?:\.j)?-(\d+)-(\d+)\.jpg$")
HEK_CLASS = {"293A": "HEK293A", "HT1080": "HT1080"}


def build_hek(raw_root: Path, out: Path, raw_files) -> None:
    """CellTypeClassification JPEGs (pinned commit) -> lossless PNGs + ``metadata.csv``.

    1. ``NeuralNetworkTraining/293A`` and ``/HT1080``, each sorted by file name.
    2. Each JPEG (8-bit, 224 x 224, one channel) is decoded and saved as PNG, pixels unchanged.
    3. ``293A-<frame>.j-<cell>-<n>.jpg`` / ``HT1080-<frame>-<cell>-<n>.jpg`` ->
       ``<class>_f<frame>_c<cell, 2 digits>_n<n, 3 digits>.png``; folder ``293A`` -> ``HEK293A``.
    """
    import cv2

    out = Path(out)
    parsed = []
    for f in raw_files:
        name = f.path.rsplit("/", 1)[-1]
        m = _HEK.match(name)
        if not m:
            raise ValueError(f"hek293a_ht1080: unexpected raw file name {name!r}")
        parsed.append((m.groups(), f))
    parsed.sort(key=lambda t: (HEK_CLASS[t[0][0]], t[1].path.rsplit("/", 1)[-1]))
    rows = []
    for (src_cls, frame, cell, n), f in parsed:
        cls = HEK_CLASS[src_cls]
        img = _imread(Path(raw_root) / f.path)
        if img.ndim == 3:
            raise ValueError(f"{f.path}: expected a single-channel JPEG, got {img.shape}")
        rel = f"{cls}/{cls}_f{frame}_c{int(cell):02d}_n{int(n):03d}.png"
        (out / cls).mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(out / rel), img):
            raise OSError(f"could not write {out / rel}")
        source_file = "NeuralNetworkTraining/" + f.url.split("/NeuralNetworkTraining/", 1)[-1]
        rows.append({"file": rel, "class": cls, "source_file": source_file,
                     "source_frame": f"{src_cls}-{frame}", "cell_in_frame": int(cell)})
    _write_csv(pd.DataFrame(rows), out / "metadata.csv")


# ------------------------------------------------------------------------- as is

def build_copy(raw_root: Path, out: Path, raw_files) -> None:
    """Files distributed ready to use (gene sets, direct downloads): copied unchanged."""
    for f in raw_files:
        shutil.copyfile(Path(raw_root) / f.path, Path(out) / f.path.rsplit("/", 1)[-1])


BUILDERS = {
    "vangalen2019": build_vangalen2019,
    "tcga6": build_tcga6,
    "neurips_starter": build_neurips_starter,
    "stemcell": build_stemcell,
    "hek": build_hek,
    "copy": build_copy,
}
