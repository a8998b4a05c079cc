"""Microscopy image datasets (Part II): a class-per-folder reader and the two registered sets.

Every loader returns an :class:`ImageSet`: a list of images (NumPy arrays exactly as decoded
by OpenCV: ``(H, W)`` grayscale or ``(H, W, 3)`` BGR, uint8 or uint16; sizes may differ),
their labels, the group each image belongs to (the source frame / field of view: every
split must keep a group on one side), the file names, a :class:`DataInfo` for the results
JSON, and the files that were skipped with the reason.

    ims = image_folder("path/to/folders")        # one sub-folder per class
    ims = image_folder("crops", groups="donor")  # crops/metadata.csv: file, label, donor
    ims = stemcell_passage()                     # 152 tiles, groups = source_image
    ims = hek293a_ht1080()                       # 200 crops, groups = source_frame
    ims = load_images("stemcell_passage_phase", fallback="synthetic")

Checksum of a folder dataset: ``info.sha256`` is the sha256 of its ``metadata.csv`` (the
file list with labels and groups); :func:`folder_digest` gives a digest of every file's
name and bytes when a stronger check is wanted (slower: it reads every image).
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..splits import check_missing
from ..validation import OPTIONAL_PATH, PATH, SEED, Interval, Options, validate_params
from .registry import DataInfo, info_for, load_source, locate, sha256sum
from .scrna import _read_table

# OpenCV is imported where it is used, so that `cellbook data` stays light.

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class ImageSet:
    """Images with labels, groups and provenance.

    images : list of ndarray, each ``(H, W)`` or ``(H, W, C)`` as decoded (BGR order for colour)
    labels : ndarray of str, shape ``(n,)``
    groups : ndarray of str, shape ``(n,)``; the unit of independence (source frame)
    files  : list of str, paths relative to the dataset folder
    info   : DataInfo (name, source, path, sha256, real)
    skipped : list of ``(file, reason)`` for files that could not be read
    meta   : DataFrame, one row per image (metadata.csv columns where the dataset has them)
    unlisted : list of image files found in the dataset folder but absent from its metadata.csv
             (not loaded; warned about and counted in ``info.note``)

    A missing label or group (NaN, None, empty) is a ``ValueError`` naming the files.
    """

    images: list
    labels: np.ndarray
    groups: np.ndarray
    files: list
    info: DataInfo
    skipped: list = field(default_factory=list)
    meta: pd.DataFrame | None = None
    unlisted: list = field(default_factory=list)

    def __post_init__(self):
        names = list(self.files) if len(self.files) == len(self.labels) else None
        fix = "drop those images (rows of metadata.csv) or fill in their {}"
        self.labels = check_missing(self.labels, "ImageSet labels", names, "images", fix.format("label")).astype(str)
        names = list(self.files) if len(self.files) == len(self.groups) else None
        self.groups = check_missing(self.groups, "ImageSet groups", names, "images", fix.format("group"),
                                    kind="group").astype(str)
        n = len(self.images)
        if not (len(self.labels) == len(self.groups) == len(self.files) == n):
            raise ValueError(f"ImageSet: {n} images but {len(self.labels)} labels, {len(self.groups)} groups "
                             f"and {len(self.files)} files")
        if self.meta is None:
            self.meta = pd.DataFrame({"file": self.files, "label": self.labels, "group": self.groups})

    def __len__(self) -> int:
        return len(self.images)

    @property
    def classes(self) -> list[str]:
        return sorted(np.unique(self.labels).tolist())

    def counts(self) -> pd.DataFrame:
        """Images and groups per class."""
        df = pd.DataFrame({"label": self.labels, "group": self.groups})
        return df.groupby("label").agg(images=("group", "size"), groups=("group", "nunique"))

    def subset(self, idx) -> ImageSet:
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return ImageSet(images=[self.images[i] for i in idx], labels=self.labels[idx], groups=self.groups[idx],
                        files=[self.files[i] for i in idx], info=self.info, skipped=list(self.skipped),
                        meta=self.meta.iloc[idx].reset_index(drop=True), unlisted=list(self.unlisted))

    def binary(self, positive: str) -> np.ndarray:
        """``1`` where the label is ``positive``, else ``0`` (for screening metrics)."""
        if positive not in self.classes:
            raise ValueError(f"positive class {positive!r} is not a label; labels: {', '.join(self.classes)}")
        return (self.labels == positive).astype(int)


@validate_params({"path": PATH})
def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file with OpenCV (``IMREAD_UNCHANGED``: keeps 16-bit and alpha).

    Raises ``ValueError`` naming the file when it cannot be decoded or is empty.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None or img.size == 0:
        raise ValueError(f"{path}: not a readable image (corrupt, empty or an unsupported format)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]  # drop alpha
    return img


def _read_many(root: Path, rel_files: list[str], stacklevel: int = 3):
    images, kept, skipped = [], [], []
    for rel in rel_files:
        try:
            images.append(read_image(root / rel))
            kept.append(rel)
        except (ValueError, FileNotFoundError) as err:
            skipped.append((rel, str(err).split(": ", 1)[-1]))
    if skipped:
        warnings.warn(f"{len(skipped)} unreadable image file(s) skipped: "
                      + ", ".join(f for f, _ in skipped[:5]) + (" ..." if len(skipped) > 5 else ""),
                      stacklevel=stacklevel)
    return images, kept, skipped


def _groups_for(files: list[str], rule, root: Path, table: Path | None = None,
                meta: pd.DataFrame | None = None) -> tuple[list[str], str]:
    """One group per file from ``rule`` (see :func:`image_folder`), and a note saying how they were made
    (``table``, ``meta``: the metadata table and its rows, whose columns the messages name)."""
    columns = "" if meta is None else (f"; or name a column of {table.name} (columns: "
                                       f"{', '.join(map(str, meta.columns))})")
    if rule is None:
        groups = [str(Path(f).with_suffix("")) for f in files]
        note = ("EACH IMAGE IS ITS OWN GROUP (no groups= given): grouped splits cannot keep images of one frame "
                "or donor together")
        warnings.warn(f"image_folder({root}): no groups= given, so each of the {len(files)} images is its own group; "
                      f"grouped splits then cannot keep crops of one frame / cells of one donor on one side and "
                      f"scores are inflated if images share a source. Pass groups='from_filename', a regex, a "
                      f"function of the file path, or a mapping file -> group{columns}", UserWarning, stacklevel=4)
        return groups, note
    if callable(rule):
        groups, note = [rule(f) for f in files], "groups from a function of the file path"
    elif isinstance(rule, str):
        pattern = r"^(.+)[_-][^_-]+$" if rule == "from_filename" else rule
        try:
            rx = re.compile(pattern)
        except re.error as err:
            raise ValueError(f"groups='{rule}' is not 'from_filename' nor a valid regular expression ({err}); "
                             f"e.g. groups=r'(frame\\d+)'{columns}") from None
        groups, bad = [], []
        for f in files:
            m = rx.search(Path(f).stem)
            if m is None:
                bad.append(f)
                groups.append(None)
            else:
                groups.append(m.group(1) if rx.groups else m.group(0))
        if bad:
            what = ("the file name up to its last '_' or '-' (frame12_tile3.png -> frame12)" if rule == "from_filename"
                    else f"the regex '{rule}'")
            raise ValueError(f"groups='{rule}': {len(bad)} file name(s) do not fit {what}: {', '.join(bad[:5])}"
                             f"{' ...' if len(bad) > 5 else ''}; rename them, or pass another regex, a function "
                             f"or a mapping file -> group{columns}")
        note = f"groups from the file names ({'rule from_filename' if rule == 'from_filename' else 'regex ' + rule})"
    elif hasattr(rule, "get"):
        groups, bad = [], []
        for f in files:
            key = next((k for k in (f, Path(f).name, Path(f).stem) if k in rule), None)
            groups.append(None if key is None else rule[key])
            if key is None:
                bad.append(f)
        if bad:
            raise ValueError(f"groups mapping has no entry for {len(bad)} image(s): {', '.join(bad[:5])}"
                             f"{' ...' if len(bad) > 5 else ''}; add them (keys: relative path, file name or stem)")
        note = "groups from a mapping"
    else:
        raise ValueError(f"groups must be None, 'from_filename', a regex string, a function or a mapping; "
                         f"got {type(rule).__name__}")
    return groups, note


@validate_params({"path": PATH, "extensions": [tuple, list, set, frozenset], "min_classes": Interval(int, 1, None),
                  "name": [None, str], "metadata": OPTIONAL_PATH, "label": str})
def image_folder(path: str | os.PathLike, extensions=IMAGE_EXTENSIONS, min_classes: int = 2,
                 name: str | None = None, groups=None, metadata: str | os.PathLike | None = "metadata.csv",
                 label: str = "label") -> ImageSet:
    """Read a folder of images: listed in a metadata table, or one sub-folder per class.

    ``metadata``: a CSV table, one row per image (a path relative to the folder, or absolute): column ``file``
    holds the image paths relative to the folder, the column named by ``label`` the class, the column named
    by ``groups`` (default: column ``group`` if there is one) the group, as in the registered datasets'
    ``metadata.csv``.  By default ``metadata.csv`` is read when the folder has one, else the sub-folder-per-
    class layout (``extensions`` applies there); ``None``: always sub-folders.  A listed file that does not
    exist, a ``label`` that is no column and an empty label or group are errors; image files the table does
    not list are not loaded (warned; ``ImageSet.unlisted``); ``ImageSet.meta`` holds the table's rows.

    - Unreadable or corrupt files are skipped and listed in ``ImageSet.skipped`` (with a warning);
      no readable image at all is a ``ValueError``.  Empty class folders are skipped with a warning.
    - Fewer than ``min_classes`` non-empty classes is a ``ValueError`` (a classifier needs two).
    - Images may differ in size, channels and bit depth; :mod:`cellbook.preprocess.imaging`
      brings them to one 8-bit grayscale size.

    ``groups`` says which images share a source (frame, well, donor), so that grouped splits keep them on
    one side.  A string that is a column of the metadata table is that column (``groups="donor"``): a
    column name comes before every rule below.  Otherwise:

    - ``"from_filename"``: the file name up to its last ``_`` or ``-`` (``frame12_tile3.png`` -> ``frame12``);
    - any other string: a regular expression searched in the file name (without extension); its
      first capture group (or the whole match) is the group, e.g. ``r"(f\\d+)_c"``;
    - a function ``f(relative_path) -> group``; or a mapping from relative path, file name or stem to group;
    - ``None`` (default): the table's column ``group`` if it has one, else each image is its own group.  That
      is said loudly (a warning, and ``info.note``), and the grouped splits of :mod:`cellbook.splits` warn again.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; expected a folder with one sub-folder per class")
    table = _metadata_path(root, metadata)
    if table is None:
        images, labels, files, skipped, empty = _class_folders(root, extensions)
        meta, unlisted = None, []
    else:
        images, labels, files, skipped, meta, unlisted = _listed_images(root, table, label, groups)
        empty = []
    n_classes = len(set(labels))
    if n_classes < min_classes:
        raise ValueError(f"{root}: {n_classes} class(es) with readable images "
                         f"({', '.join(sorted(map(str, set(labels)))) or 'none'}; empty: {', '.join(empty) or 'none'}"
                         f"); at least {min_classes} are needed")
    column = _group_column(meta, groups)
    if column is None:
        group_ids, group_note = _groups_for(files, groups, root, table, meta)
    else:
        group_ids, group_note = meta[column].tolist(), f"groups from column {column!r} of {table.name}"
    info = DataInfo(name=name or root.name, title=f"image folder {root.name}", source=str(root), path=str(root),
                    sha256=None if table is None else sha256sum(table), real=True,
                    note=f"{len(images)} images, {n_classes} classes, {len(skipped)} unreadable skipped; {group_note}")
    return ImageSet(images, np.array(labels), np.array(group_ids, dtype=object), files, info, skipped, meta,
                    unlisted=unlisted)


def _metadata_path(root: Path, metadata) -> Path | None:
    """The metadata table to read (``None``: the sub-folder layout); a table named but missing is an error."""
    if metadata is None:
        return None
    table = root / Path(metadata).expanduser()
    if table.is_file():
        return table
    if str(metadata) == "metadata.csv":       # the default, and the folder has none: class sub-folders
        return None
    raise FileNotFoundError(f"image_folder: metadata={str(metadata)!r}: no table at {table} (give a path relative "
                            f"to the image folder, or absolute); or pass metadata=None to read class sub-folders")


def _class_folders(root: Path, extensions):
    """Images, labels (sub-folder names), files, skipped files and empty classes of the sub-folder layout."""
    exts = tuple(e.lower() for e in extensions)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"{root} has no class sub-folders (and no metadata.csv); put the images of each class in "
                         f"their own sub-folder (e.g. {root}/classA/*.png, {root}/classB/*.png), or list them in a "
                         f"table with columns file, label (and group) and pass metadata=...")
    images, labels, files, skipped, empty = [], [], [], [], []
    for d in class_dirs:
        rel = sorted(str(p.relative_to(root)) for p in d.iterdir() if p.is_file() and p.suffix.lower() in exts)
        ims, kept, skip = _read_many(root, rel, stacklevel=5)
        skipped += skip
        if not ims:
            empty.append(d.name)
            continue
        images += ims
        files += kept
        labels += [d.name] * len(ims)
    if empty:
        warnings.warn(f"class folder(s) with no readable image skipped: {', '.join(empty)}", stacklevel=4)
    if not images:
        raise ValueError(_nothing_readable(root, skipped, exts))
    return images, labels, files, skipped, empty


def _listed_images(root: Path, table: Path, label: str, groups):
    """Images, labels, files, skipped files, the table's rows of the images read and the unlisted image files."""
    meta = _read_table(table, "image metadata")
    if label not in meta.columns:
        raise ValueError(f"image_folder: label={label!r} is not a column of {table}; its columns: "
                         f"{', '.join(map(str, meta.columns))}; name the label column with label=... (or pass "
                         f"metadata=None to read class sub-folders)")
    meta = _check_metadata(meta, table, label, _group_column(meta, groups), caller="image_folder",
                           remedy="pass metadata=None to read class sub-folders instead")
    files = meta["file"].astype(str).tolist()
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(f"image_folder: {table.name} lists {len(missing)} file(s) that do not exist under "
                                f"{root}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; its column "
                                f"'file' holds paths relative to the image folder: fix them or delete those rows")
    images, kept, skipped = _read_many(root, files, stacklevel=5)
    if not images:
        raise ValueError(_nothing_readable(root, skipped, IMAGE_EXTENSIONS).replace(
            "image file(s)", f"image file(s) listed in {table.name}"))
    unlisted = _unlisted_images(root, files)
    if unlisted:
        warnings.warn(f"image_folder: {len(unlisted)} image file(s) in {root} are not in {table.name} and are NOT "
                      f"loaded: {', '.join(unlisted[:5])}{' ...' if len(unlisted) > 5 else ''}; add rows for them "
                      f"or move them out (listed in ImageSet.unlisted)", UserWarning, stacklevel=4)
    meta = meta.assign(file=files).set_index("file").loc[kept].reset_index()
    return images, meta[label].tolist(), kept, skipped, meta, unlisted


def _group_column(meta, groups) -> str | None:
    """The metadata column that holds the groups: ``groups`` when it names one, else ``group`` by default."""
    if meta is None:
        return None
    if isinstance(groups, str) and groups in meta.columns:
        return groups
    return "group" if groups is None and "group" in meta.columns else None


def _nothing_readable(root: Path, skipped: list, exts) -> str:
    if not skipped:
        return (f"{root}: no image files ({', '.join(exts)}) found; put the images in the class folders "
                f"or pass extensions=...")
    reasons = "; ".join(f"{f}: {r}" for f, r in skipped[:3])
    return (f"{root}: none of the {len(skipped)} image file(s) could be read ({reasons}"
            f"{'; ...' if len(skipped) > 3 else ''}); replace the corrupt files (download the dataset again)")


def _read_metadata(meta_path: Path, label_col: str, group_col: str) -> pd.DataFrame:
    """A registered dataset's metadata.csv, read and checked (:func:`_check_metadata`)."""
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} does not exist; a registered image dataset needs its metadata.csv "
                                f"(file, label and group per image): download the dataset again")
    return _check_metadata(_read_table(meta_path, "image metadata"), meta_path, label_col, group_col)


def _check_metadata(meta: pd.DataFrame, meta_path: Path, label_col: str, group_col: str | None, caller: str = "",
                    remedy: str = "download the dataset again") -> pd.DataFrame:
    """A metadata table, checked: the needed columns, at least one row, no duplicated or empty file, label or
    group (``group_col`` None: no group column).  ``caller`` names the arguments in the messages."""
    missing = [c for c in ("file", label_col, group_col) if c is not None and c not in meta.columns]
    if missing:
        raise ValueError(f"{meta_path}: column(s) {', '.join(missing)} missing; present: "
                         f"{', '.join(map(str, meta.columns))}; fix the header (or {remedy})")
    if meta.empty:
        raise ValueError(f"{meta_path} has a header but no rows: it lists no image; write one row per image "
                         f"(or {remedy})")
    lines = pd.Series(np.arange(len(meta)) + 2, index=meta.index)      # line numbers in the file (header = 1)
    check_missing(meta["file"].to_numpy(), f"{meta_path}: column 'file'", [f"line {n}" for n in lines], "rows",
                  "fill in the file name or delete those rows", kind="file name")
    dup = meta["file"].astype(str).duplicated(keep=False)
    if dup.any():
        shown = "; ".join(f"{f} (lines {', '.join(map(str, lines[meta['file'].astype(str) == f]))})"
                          for f in pd.unique(meta.loc[dup, "file"].astype(str))[:5])
        raise ValueError(f"{meta_path}: {int(dup.sum())} rows list the same image twice or more: {shown}; "
                         f"delete the duplicate rows (one row per image)")
    names = meta["file"].astype(str).tolist()
    fix = f"delete those rows of {meta_path} or fill in their {{}}"
    arg = (lambda name, col: f"{caller}({name}={col!r}): ") if caller else (lambda name, col: "")
    check_missing(meta[label_col].to_numpy(), f"{arg('label', label_col)}{meta_path}: column {label_col!r}", names,
                  "images", fix.format("label"))
    if group_col is not None:
        check_missing(meta[group_col].to_numpy(), f"{arg('groups', group_col)}{meta_path}: column {group_col!r}",
                      names, "images", fix.format("group"), kind="group")
    return meta


def _unlisted_images(folder: Path, listed) -> list[str]:
    """Image files under ``folder`` that the metadata does not list (relative paths, sorted)."""
    listed = {str(Path(f)) for f in listed}
    on_disk = (str(p.relative_to(folder)) for p in folder.rglob("*")
               if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    return sorted(f for f in on_disk if f not in listed)


def _registered(name: str, path, label_col: str, group_col: str) -> ImageSet:
    folder = locate(name, path)
    meta_path = folder / "metadata.csv"
    meta = _read_metadata(meta_path, label_col, group_col)
    images, kept, skipped = _read_many(folder, meta["file"].tolist())
    if not images:
        raise ValueError(_nothing_readable(folder, skipped, IMAGE_EXTENSIONS).replace(
            "image file(s)", f"image file(s) listed in {meta_path.name}"))
    unlisted = _unlisted_images(folder, meta["file"])
    if unlisted:
        warnings.warn(f"{name}: {len(unlisted)} image file(s) in {folder} are not in metadata.csv and are NOT "
                      f"loaded: {', '.join(unlisted[:5])}{' ...' if len(unlisted) > 5 else ''}; add rows for them "
                      f"(file, label, group) or move them out (listed in ImageSet.unlisted)", UserWarning, stacklevel=4)
    meta = meta.set_index("file").loc[kept].reset_index()
    info = info_for(name, folder)
    info.sha256 = sha256sum(meta_path)
    info.note = (f"{len(images)} images, {meta[group_col].nunique()} groups ({group_col}); "
                 f"sha256 of metadata.csv") + (f"; {len(skipped)} unreadable skipped" if skipped else "") + \
        (f"; {len(unlisted)} image files not in metadata.csv ignored" if unlisted else "")
    return ImageSet(images, meta[label_col].to_numpy(), meta[group_col].to_numpy(), kept, info, skipped, meta,
                    unlisted=unlisted)


@validate_params({"path": OPTIONAL_PATH, "label": Options("binary", "passage")})
def stemcell_passage(path=None, label: str = "binary") -> ImageSet:
    """Stem-cell micrographs at passage P2 / P6 / P7: 152 RGB tiles (384 x 512) of 38 frames.

    ``label="binary"``: ``early_P2`` vs ``late_P6_P7`` (the book's stand-in for high / low
    function); ``label="passage"``: P2 / P6 / P7.  Groups are ``source_image`` (4 tiles per frame).
    """
    return _registered("stemcell_passage_phase", path, "binary_label" if label == "binary" else "class",
                       "source_image")


@validate_params({"path": OPTIONAL_PATH})
def hek293a_ht1080(path=None) -> ImageSet:
    """HEK293A vs HT1080 bright-field single-cell crops: 200 grayscale 224 x 224 images.

    Groups are ``source_frame`` (the field of view a cell was cropped from).
    """
    return _registered("hek293a_ht1080_brightfield", path, "class", "source_frame")


@validate_params({"n_per_class": Interval(int, 1, None), "per_group": Interval(int, 1, None), "size": [tuple, list],
                  "seed": SEED})
def synthetic_images(n_per_class: int = 40, per_group: int = 4, size=(192, 256), seed: int = 0) -> ImageSet:
    """A labelled SYNTHETIC stand-in: dark phase-like fields of bright-rimmed cells.

    Class ``round`` has round cells, class ``spread`` elongated ones; both classes get the
    same brightness distribution, so only morphology separates them.  ``info.real`` is False.
    """
    import cv2

    rng = np.random.default_rng(seed)
    h, w = size
    images, labels, groups, files = [], [], [], []
    for cls, elong in (("round", 1.0), ("spread", 3.0)):
        for i in range(n_per_class):
            g = i // per_group
            img = np.full((h, w), rng.uniform(25, 45), np.float32)
            for _ in range(int(rng.integers(6, 14))):
                cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
                a = int(rng.integers(6, 12))
                axes = (int(a * elong), a)
                ang = float(rng.uniform(0, 180))
                cv2.ellipse(img, (cx, cy), axes, ang, 0, 360, float(rng.uniform(120, 200)), 2)
                cv2.ellipse(img, (cx, cy), (max(1, axes[0] - 2), max(1, axes[1] - 2)), ang, 0, 360,
                            float(rng.uniform(50, 80)), -1)
            img += rng.normal(0, 6, img.shape).astype(np.float32)
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(cls)
            groups.append(f"{cls}-frame{g:02d}")
            files.append(f"{cls}/{cls}_{i:03d}.png")
    info = DataInfo(name="synthetic_images", title="SYNTHETIC micrographs (ellipses; not real cells)",
                    source="cellbook.datasets.images.synthetic_images", path=None, sha256=None, real=False,
                    note=f"seed={seed}")
    return ImageSet(images, np.array(labels), np.array(groups), files, info)


LOADERS = {
    "stemcell_passage_phase": stemcell_passage,
    "hek293a_ht1080_brightfield": hek293a_ht1080,
}


@validate_params({"source": Options(*LOADERS), "path": OPTIONAL_PATH, "fallback": Options("error", "synthetic"),
                  "seed": SEED})
def load_images(source: str = "stemcell_passage_phase", path=None, fallback: str = "error",
                seed: int = 0) -> ImageSet:
    """Load a registered image dataset; ``fallback="synthetic"`` gives a labelled stand-in when missing."""
    return load_source(LOADERS, source, path=path, fallback=fallback, synthetic=synthetic_images, seed=seed,
                       info=lambda ims: ims.info)


@validate_params({"folder": PATH, "extensions": [tuple, list, set, frozenset]})
def folder_digest(folder: str | os.PathLike, extensions=IMAGE_EXTENSIONS + (".csv",)) -> str:
    """sha256 over the sorted relative paths and bytes of every data file under ``folder``."""
    root = Path(folder)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file() and q.suffix.lower() in extensions):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()
