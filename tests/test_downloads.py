"""Downloads under the faults real users meet, on a local HTTP server (127.0.0.1).

- a connection cut at 90 % resumes with an HTTP ``Range`` request (only the rest is sent again),
  within one fetch and across runs;
- two processes fetching the same dataset at once: it is downloaded once and both succeed;
- a cached dataset changed after its fetch (truncated, edited) is noticed when it is loaded;
- a full disk (``ENOSPC``, simulated) keeps the old cache and leaves nothing behind;
- what a killed download leaves is resumed or removed by the next run.
"""
from __future__ import annotations

import errno
import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cellbook.datasets import cache, downloads, registry
from cellbook.datasets.registry import DatasetChangedError, RawFile

REPO = Path(__file__).resolve().parents[1]
SIZE = 6 << 20


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.root`` with ``Range`` support; ``server.cut_at[path]`` is a list of fractions at which
    to cut successive responses; ``server.delay`` seconds pass between 64 kB blocks."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        srv = self.server
        path = self.path.split("?")[0]
        srv.hits.append((path, self.headers.get("Range")))
        p = Path(srv.root) / path.lstrip("/")
        if not p.is_file():
            self.send_error(404)
            return
        data = p.read_bytes()
        start = 0
        if self.headers.get("Range", "").startswith("bytes="):
            start = int(self.headers["Range"][6:].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        cuts = srv.cut_at.get(path) or []
        stop = int(len(data) * cuts.pop(0)) if cuts else len(data)
        for i in range(start, max(start, stop), 1 << 16):
            self.wfile.write(data[i:min(i + (1 << 16), stop)])
            srv.sent += min(i + (1 << 16), stop) - i
            if srv.delay:
                time.sleep(srv.delay)
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "mirror"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.root, httpd.cut_at, httpd.hits, httpd.sent, httpd.delay = root, {}, [], 0, 0.0
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _toy_files(root: Path, seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    payload = {"toy/a.bin": rng.integers(0, 255, SIZE, dtype=np.uint8).tobytes(), "toy/b.txt": b"hello\n"}
    for rel, data in payload.items():
        (root / "raw" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "raw" / rel).write_bytes(data)
    return payload


def _toy_dataset(payload: dict[str, bytes]) -> registry.Dataset:
    raws = tuple(RawFile(rel, f"https://example.invalid/{rel}", "sha256:" + hashlib.sha256(data).hexdigest())
                 for rel, data in payload.items())
    return registry.Dataset(name="toy", title="toy", source="https://example.invalid", citation="",
                            marker="a.bin", kind="files", builder="copy", raw=raws)


@pytest.fixture
def toy(server, monkeypatch, tmp_path):
    monkeypatch.delenv("CELLBOOK_DATA", raising=False)
    monkeypatch.setenv("CELLBOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CELLBOOK_MIRROR", server.url)
    monkeypatch.setenv("CELLBOOK_PROGRESS", "0")
    payload = _toy_files(server.root)
    monkeypatch.setitem(registry.REGISTRY, "toy", _toy_dataset(payload))
    return payload


def _debris(folder: Path) -> list[str]:
    """Anything a write or download could leave behind (lock files are not: they hold no data)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and (
        p.name.startswith("tmp") or ".part" in p.name or ".old" in p.name or p.name.endswith(".resume")))


def test_cut_at_90_percent_resumes_with_a_range_request(toy, server, tmp_path):
    server.cut_at["/raw/toy/a.bin"] = [0.9]
    path = cache.fetch("toy")
    assert (path / "a.bin").read_bytes() == toy["toy/a.bin"]
    (first, no_range), (again, asked) = [h for h in server.hits if h[0] == "/raw/toy/a.bin"]
    resumed_at = int(asked.removeprefix("bytes=").rstrip("-"))
    assert no_range is None and SIZE * 0.85 < resumed_at <= SIZE * 0.9   # the rest, from where it stopped
    assert server.sent < SIZE * 1.02                           # the first 85-90 % were not sent again
    assert _debris(tmp_path / "cache") == []


def test_a_failed_run_resumes_on_the_next_run(toy, server, tmp_path):
    server.cut_at["/raw/toy/a.bin"] = [0.3, 0.5, 0.7]          # every attempt of the first run is cut
    with pytest.raises(cache.DownloadError, match=r"a\.bin \(3 attempts\).*connection cut after"):
        cache.fetch("toy")
    assert not (tmp_path / "cache" / "toy").exists()
    partial = tmp_path / "cache" / "raw" / "toy" / ".a.bin.resume"
    kept = partial.stat().st_size
    assert kept > SIZE // 2                                    # what arrived is kept for the next run
    cache.fetch("toy")
    assert server.hits[-2] == ("/raw/toy/a.bin", f"bytes={kept}-")
    assert (tmp_path / "cache" / "toy" / "a.bin").read_bytes() == toy["toy/a.bin"]
    assert _debris(tmp_path / "cache") == []


_FETCH_SCRIPT = """
import hashlib, json, sys
sys.path.insert(0, {tests!r})
from test_downloads import _toy_dataset
from cellbook.datasets import cache, registry
payload = {{k: open(v, "rb").read() for k, v in json.loads(sys.argv[1]).items()}}
registry.REGISTRY["toy"] = _toy_dataset(payload)
print(cache.fetch("toy"), flush=True)
"""


def _start_fetch(server, tmp_path) -> subprocess.Popen:
    files = {rel: str(server.root / "raw" / rel) for rel in ("toy/a.bin", "toy/b.txt")}
    env = {**os.environ, "CELLBOOK_CACHE": str(tmp_path / "cache"), "CELLBOOK_MIRROR": server.url,
           "CELLBOOK_PROGRESS": "0", "PYTHONPATH": str(REPO)}
    env.pop("CELLBOOK_DATA", None)
    script = _FETCH_SCRIPT.format(tests=str(REPO / "tests"))
    return subprocess.Popen([sys.executable, "-c", script, json.dumps(files)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(condition, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_two_processes_fetch_the_same_dataset_once(toy, server, tmp_path):
    server.delay = 0.02                                          # about 2 s for a.bin: the two overlap
    first = _start_fetch(server, tmp_path)
    _wait_for(lambda: server.hits)                               # the first one is downloading
    second = _start_fetch(server, tmp_path)
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], [err[-2000:] for _, err in outs]
    assert outs[0][0].strip() == outs[1][0].strip() == str(tmp_path / "cache" / "toy")
    assert [h[0] for h in server.hits] == ["/raw/toy/a.bin", "/raw/toy/b.txt"]   # each file once
    assert _debris(tmp_path / "cache") == []


def test_a_killed_download_is_resumed_and_its_debris_removed(toy, server, tmp_path):
    server.delay = 0.05
    proc = _start_fetch(server, tmp_path)
    partial = tmp_path / "cache" / "raw" / "toy" / ".a.bin.resume"
    _wait_for(lambda: partial.is_file() and partial.stat().st_size > SIZE // 8)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = _debris(tmp_path / "cache")
    assert "raw/toy/.a.bin.resume" in left and any(Path(p).name.startswith("tmp") for p in left), left
    server.delay = 0.0
    kept = partial.stat().st_size
    cache.fetch("toy")
    assert server.hits[-2] == ("/raw/toy/a.bin", f"bytes={kept}-")
    assert _debris(tmp_path / "cache") == []


def test_disk_full_keeps_the_old_cache_and_leaves_nothing(toy, server, tmp_path, monkeypatch):
    cache.fetch("toy")
    before = {p.name: p.read_bytes() for p in (tmp_path / "cache" / "toy").iterdir()}
    new = _toy_files(server.root, seed=1)                        # a new version on the server
    monkeypatch.setitem(registry.REGISTRY, "toy", _toy_dataset(new))
    written = []

    def disk_full(fh, block):
        if sum(written) > SIZE // 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(len(block))
        fh.write(block)

    monkeypatch.setattr(downloads, "_write", disk_full)
    with pytest.raises(cache.DownloadError, match="No space left on device.*nothing was kept"):
        cache.fetch("toy", force=True)
    after = {p.name: p.read_bytes() for p in (tmp_path / "cache" / "toy").iterdir()}
    assert after == before                                       # the last good dataset, untouched
    assert _debris(tmp_path / "cache") == []


@pytest.fixture
def fetched_tcga(data_root, tmp_path, monkeypatch):
    """The real ``tcga6_rnasum_counts`` built from the public originals into an empty cache, as a fetch leaves it."""
    raw_root = data_root / "raw"
    if not (raw_root / "RNAsum.data").is_dir():
        pytest.skip(f"the public originals are not here ({raw_root})")
    monkeypatch.delenv("CELLBOOK_DATA", raising=False)
    monkeypatch.setenv("CELLBOOK_CACHE", str(tmp_path / "cache"))
    return cache.build("tcga6_rnasum_counts", raw_root=raw_root)


def test_a_cached_dataset_changed_after_its_fetch_is_noticed_at_load(fetched_tcga):
    import cellbook as cb

    path = fetched_tcga
    assert cb.datasets.bulk.load_bulk("tcga6").n_obs > 0          # as fetched: loads
    with open(path, "r+b") as fh:                                 # truncated later (a full disk, a bad copy)
        fh.truncate(path.stat().st_size // 2)
    with pytest.raises(DatasetChangedError) as err:
        cb.datasets.bulk.load_bulk("tcga6")
    msg = str(err.value)
    assert "tcga6_rnasum_counts" in msg and "changed since the dataset was fetched" in msg
    assert "cellbook data verify tcga6_rnasum_counts" in msg and "fetch tcga6_rnasum_counts --force" in msg


def test_a_touched_file_passes_verify_which_re_records_its_time(fetched_tcga):
    import cellbook as cb

    path = fetched_tcga
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10 ** 9))
    with pytest.raises(DatasetChangedError, match="modified after the fetch"):
        cb.datasets.bulk.load_bulk("tcga6")
    rows = cache.verify_dataset("tcga6_rnasum_counts")
    assert all(ok for _, ok, _ in rows) and any("times re-recorded" in d for _, _, d in rows)
    assert cb.datasets.bulk.load_bulk("tcga6").n_obs > 0
