"""Profiles, device selection and seeding: the three knobs every notebook shares.

Profiles live in one YAML file, ``cellbook/profiles.yaml``.  A profile maps a
notebook (its path under ``notebooks/`` without ``.ipynb``) to the parameter
values that notebook runs with; ``defaults`` apply to every notebook that has a
parameter of that name.
"""
from __future__ import annotations

import contextlib
import os
import random
from functools import cache
from pathlib import Path

import yaml

#: Cells that :func:`cellbook.annotate` / ``cellbook annotate`` read and predict at a time (about 0.2-1 GB of
#: working memory for a 30k-gene query); here so that the command line knows it without importing torch.
ANNOTATE_CHUNK_SIZE = 20_000

PROFILES_FILE = Path(__file__).with_name("profiles.yaml")


@cache
def _load_profiles(path: str) -> dict:
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of profile names")
    return data


def profile_names(path: Path | str = PROFILES_FILE) -> list[str]:
    """Names of the profiles defined in the profiles file."""
    return sorted(_load_profiles(str(path)))


def profile_parameters(profile: str, notebook: str, path: Path | str = PROFILES_FILE) -> dict:
    """Parameters ``profile`` sets for ``notebook`` (e.g. ``"part1/01_data"``).

    Raises ``ValueError`` naming the valid profiles when ``profile`` is unknown.
    """
    profiles = _load_profiles(str(path))
    if profile not in profiles:
        raise ValueError(
            f"unknown profile {profile!r}; valid profiles: {', '.join(sorted(profiles))}"
        )
    spec = profiles[profile] or {}
    params = dict(spec.get("defaults") or {})
    params.update((spec.get("notebooks") or {}).get(notebook) or {})
    return params


def profile_smoke(profile: str, path: Path | str = PROFILES_FILE) -> dict:
    """The loop sizes ``--smoke`` cuts for ``profile`` (``{parameter: value}``); a profile without a
    ``smoke`` overlay is a ``ValueError``."""
    profile_parameters(profile, "", path)   # an unknown profile names the valid ones
    smoke = (_load_profiles(str(path))[profile] or {}).get("smoke")
    if not smoke:
        with_smoke = [p for p, spec in _load_profiles(str(path)).items() if (spec or {}).get("smoke")]
        raise ValueError(f"profile {profile!r} has no smoke overlay; --smoke goes with: {', '.join(with_smoke)}")
    return dict(smoke)


def profile_parallel(profile: str, path: Path | str = PROFILES_FILE) -> dict:
    """How ``profile`` runs its sweeps: its ``parallel`` entry (``workers``, ``threads_per_worker``); ``{}``
    when it has none (in process). ``cellbook run --workers / --scheduler`` override it."""
    profiles = _load_profiles(str(path))
    return dict((profiles.get(profile) or {}).get("parallel") or {})


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when a CUDA device is visible, else ``"cpu"``.

    Asking for ``"cuda"`` on a machine without one is an error, not a silent CPU run.
    """
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' was asked for but no CUDA device is available; use 'auto' or 'cpu'")
        return device
    if device == "cpu":
        return "cpu"
    raise ValueError(f"unknown device {device!r}; valid: auto, cpu, cuda")


@contextlib.contextmanager
def keep_torch_threads():
    """Restore PyTorch's CPU thread count on exit.

    Some libraries change it behind one's back: scanpy's neighbour graph (numba's OpenMP layer shares
    PyTorch's libgomp) raised it from 1 to the core count, so every model trained afterwards in the same
    process ran with other kernels and gave other numbers than in a fresh process.
    """
    import torch

    before = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def seed_everything(seed: int = 0) -> int:
    """Seed Python, NumPy and PyTorch (CPU and CUDA); returns the seed."""
    import numpy as np  # numpy and torch load on first use: `cellbook --help` needs neither
    import torch

    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return seed
