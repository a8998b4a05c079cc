import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real-data folder (CELLBOOK_DATA, else ../shared/data); tests using it skip without it."""
    for cand in [*(os.environ.get("CELLBOOK_DATA", "").split(os.pathsep)), str(SHARED_DATA)]:
        if cand and Path(cand).is_dir():
            return Path(cand)
    pytest.skip("real data not available: set CELLBOOK_DATA or provide ../shared/data")


def _torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models train faster on one thread, and a shared CPU makes two threads much slower."""
    yield from _torch_threads(1)


@pytest.fixture
def caller_on_one_torch_thread():
    """One torch thread for this test alone (a test that asserts what code does to the caller's count)."""
    yield from _torch_threads(1)


@pytest.fixture
def parallel_clean(monkeypatch):
    """No sweep settings from the environment or configure(); whatever a test sets is put back after."""
    from cellbook import parallel

    for var in parallel._ENV.values():
        monkeypatch.setenv(var, "")      # recorded first, so that monkeypatch restores it afterwards
        monkeypatch.delenv(var)
    monkeypatch.setattr(parallel, "_CONFIG", {})


@pytest.fixture(scope="module")
def parallel_shutdown():
    """Close the Dask clusters a test module started."""
    yield
    from cellbook import parallel

    parallel.shutdown()
