"""Local platform benchmarks; prints numbers, asserts nothing.

1. Submit -> first trainer line, process backend, against the baseline of
   starting the same ``python -m trainer.start`` as a bare subprocess.
2. Staging throughput (what stage-in does: object store -> /opt/ml/input/data)
   for one large file and for many small files, against a raw copy of the same
   bytes (shutil) in the same process.

    .venv/bin/python bench/local_bench.py [--large-mb 512] [--small-files 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAINER = Path(__file__).resolve().parent / "trainers" / "first-line"


def first_line_bare() -> float:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "trainer.start"], cwd=TRAINER, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    elapsed = time.perf_counter() - started
    proc.wait()
    return elapsed


def first_line_submitted(backend: object) -> float:
    from trainforge import submit_job

    started = time.perf_counter()
    job = submit_job(str(TRAINER), backend=backend)  # type: ignore[arg-type]
    for _ in job.logs(follow=True):
        elapsed = time.perf_counter() - started
        break
    job.wait(timeout=60)
    return elapsed


def make_files(root: Path, large_mb: int, small_files: int) -> tuple[Path, Path]:
    large, small = root / "large", root / "small"
    large.mkdir()
    small.mkdir()
    chunk = os.urandom(1 << 20)
    with open(large / "blob.bin", "wb") as fh:
        for _ in range(large_mb):
            fh.write(chunk)
    for i in range(small_files):
        (small / f"part-{i:05d}.bin").write_bytes(os.urandom(16 << 10))
    return large, small


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--large-mb", type=int, default=512)
    parser.add_argument("--small-files", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="trainforge-bench-") as tmp:
        os.environ["TRAINFORGE_HOME"] = str(Path(tmp) / "home")
        from trainforge.backends import get_backend
        from trainforge.storage import open_store

        backend = get_backend("process")
        first_line_submitted(backend)  # warm the page cache and imports
        bare = [first_line_bare() for _ in range(args.repeats)]
        submitted = [first_line_submitted(backend) for _ in range(args.repeats)]
        b, s = statistics.median(bare), statistics.median(submitted)
        print("submit -> first trainer line (process backend), median of", args.repeats)
        print(f"  bare subprocess:  {b * 1000:8.1f} ms")
        print(f"  submit_job:       {s * 1000:8.1f} ms   ratio {s / b:.2f}x  (overhead {1000 * (s - b):.0f} ms)")

        sources = Path(tmp) / "src"
        sources.mkdir()
        large, small = make_files(sources, args.large_mb, args.small_files)
        print("\nstaging throughput: local:// store -> run directory (stage-in path)")
        for label, folder in (("one large file", large), (f"{args.small_files} small files", small)):
            uri = f"local://bench-data/{folder.name}/"
            store = open_store(uri)
            store.ensure_bucket(uri)
            store.upload_dir(str(folder), uri)
            nbytes = size_of(folder)
            raw_times, stage_times = [], []
            for i in range(3):
                raw_target = Path(tmp) / f"raw-{folder.name}-{i}"
                raw_times.append(timed(lambda: shutil.copytree(folder, raw_target)))
                stage_target = Path(tmp) / f"stage-{folder.name}-{i}"
                stage_times.append(timed(lambda: store.download_prefix(uri, str(stage_target))))
                shutil.rmtree(raw_target)
                shutil.rmtree(stage_target)
            raw, staged = min(raw_times), min(stage_times)
            mb = nbytes / 1e6
            print(f"  {label:<20} {mb:7.1f} MB   raw copy {mb / raw:8.1f} MB/s   "
                  f"trainforge {mb / staged:8.1f} MB/s   ratio {raw / staged:.2f}x of raw")


if __name__ == "__main__":
    main()
