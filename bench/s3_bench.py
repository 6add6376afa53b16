"""S3 transfers against a real MinIO; prints numbers, asserts nothing.

Disk -> MinIO (upload) and MinIO -> disk (download) of one large file and of
many small files, three ways, against the same private MinIO:

1. trainforge: ``S3Store.upload_dir`` / ``download_prefix`` (CRC32 of every
   file sent and checked, temp file + rename on download; listings and small
   files through the lean requests of ``storage/lean.py``, a large download as
   parallel ranged GETs written in place, ``storage/ranged.py``);
2. plain boto3 with the same concurrency: put_object/get_object on a pool of
   threads for small files, s3transfer (``upload_file``/``download_file``)
   with the same part size and threads for the large one; no checks;
3. ``mc cp --recursive`` (the MinIO client the test bed builds).

Each way prints its best round's MiB/s and the client's CPU seconds in that
round (this process for trainforge and boto3, the finished ``mc`` for mc):
on a shared machine the CPU moves less than the wall clock.

Then the sweeps the defaults were chosen from: part size x threads for the
large file, threads for the small files (trainforge only).

    .venv/bin/python bench/s3_bench.py [--large-mb 1024] [--small-files 10000]
        [--small-kb 100] [--rounds 2] [--no-sweep]

Needs the servers of tests/infra/build-servers.sh (minio, mc).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.infra: the test bed's MinIO
BUCKET = "bench"


def make_data(root: Path, large_mb: int, small_files: int, small_kb: int) -> dict[str, Path]:
    large, small = root / "large", root / "small"
    large.mkdir(parents=True)
    small.mkdir(parents=True)
    chunk = os.urandom(1 << 20)
    with open(large / "blob.bin", "wb") as fh:
        fh.writelines(chunk[:-8] + i.to_bytes(8, "big") for i in range(large_mb))
    for i in range(small_files):
        (small / f"part-{i:05d}.bin").write_bytes(os.urandom(small_kb << 10))
    return {f"1 x {large_mb} MiB": large, f"{small_files} x {small_kb} KiB": small}


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class Boto3Plain:
    """What a careful user writes with boto3 alone, at the same concurrency."""

    def __init__(self, client: Any, threads: int, threshold: int, chunk: int):
        from boto3.s3.transfer import TransferConfig

        self.client, self.threads = client, threads
        self.config = TransferConfig(multipart_threshold=threshold, multipart_chunksize=chunk,
                                     max_concurrency=threads)
        self.threshold = threshold

    def upload(self, folder: Path, prefix: str) -> None:
        files = sorted(p for p in folder.rglob("*") if p.is_file())

        def one(path: Path) -> None:
            key = prefix + path.relative_to(folder).as_posix()
            if path.stat().st_size >= self.threshold:
                self.client.upload_file(str(path), BUCKET, key, Config=self.config)
            else:
                with open(path, "rb") as body:
                    self.client.put_object(Bucket=BUCKET, Key=key, Body=body)

        self._each(one, files)

    def download(self, prefix: str, folder: Path) -> None:
        objects = [o for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
                   for o in page.get("Contents", [])]

        def one(obj: dict[str, Any]) -> None:
            target = folder / obj["Key"][len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            if obj["Size"] >= self.threshold:
                self.client.download_file(BUCKET, obj["Key"], str(target), Config=self.config)
            else:
                body = self.client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"]
                with open(target, "wb") as out:
                    shutil.copyfileobj(body, out, 1 << 20)

        self._each(one, objects)

    def _each(self, one: Callable[[Any], None], items: list[Any]) -> None:
        if len(items) == 1:
            one(items[0])
            return
        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(one, items))


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def cpu_seconds() -> float:
    """CPU used so far by this process and its finished children (mc)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_cpu(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, client CPU seconds) of ``fn``, after the page cache's
    dirty pages of earlier ways are written out (else a later way pays for them)."""
    os.sync()
    cpu = cpu_seconds()
    wall = timed(fn)
    return wall, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large-mb", type=int, default=1024)
    parser.add_argument("--small-files", type=int, default=10000)
    parser.add_argument("--small-kb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-sweep", action="store_true")
    args = parser.parse_args()

    from tests.infra import binaries
    from tests.infra.minio_server import start_minio

    work = Path(tempfile.mkdtemp(prefix="tf-s3-bench-"))
    minio = start_minio(work / "minio", work / "logs")
    try:
        os.environ["TRAINFORGE_HOME"] = str(work / "home")
        from trainforge.config import S3Settings, Settings
        from trainforge.storage.s3 import S3Store
        from trainforge.storage.s3client import make_client

        def store(threads: int | None = None, chunk_mb: int | None = None) -> S3Store:
            base = S3Settings()
            s3 = S3Settings(endpoint_url=minio.endpoint, access_key_id=minio.access_key,
                            secret_access_key=minio.secret_key, region=minio.region,
                            max_concurrency=threads or base.max_concurrency,
                            multipart_chunk_mb=chunk_mb or base.multipart_chunk_mb)
            return S3Store(Settings(home=work / "home", s3=s3))

        default = store()
        conf = default.settings.s3
        default.client.create_bucket(Bucket=BUCKET)
        plain = Boto3Plain(make_client(conf), conf.max_concurrency, conf.multipart_threshold_mb << 20,
                           conf.multipart_chunk_mb << 20)
        mc = str(binaries.locate("mc"))
        mc_env = minio.mc_env("bench")
        datasets = make_data(work / "src", args.large_mb, args.small_files, args.small_kb)
        print(f"MinIO on loopback, data on {work}; {os.cpu_count()} CPUs; trainforge and boto3 at "
              f"{conf.max_concurrency} threads, parts of {conf.multipart_chunk_mb} MiB from "
              f"{conf.multipart_threshold_mb} MiB; best of {args.rounds} interleaved rounds, order rotated")

        def mc_cp(source: str, target: str) -> None:
            subprocess.run([mc, "cp", "--recursive", "--quiet", source, target], env=mc_env, check=True,
                           stdout=subprocess.DEVNULL)

        for label, folder in datasets.items():
            mb = size_of(folder) / 2**20
            ways: dict[str, dict[str, Callable[[int], object]]] = {
                "upload": {
                    "trainforge": lambda r, f=folder: default.upload_dir(str(f), f"s3://{BUCKET}/tf-{f.name}-{r}/"),
                    "boto3": lambda r, f=folder: plain.upload(f, f"b3-{f.name}-{r}/"),
                    "mc cp": lambda r, f=folder: mc_cp(f"{f}/", f"bench/{BUCKET}/mc-{f.name}-{r}/"),
                },
                "download": {
                    "trainforge": lambda r, f=folder: default.download_prefix(f"s3://{BUCKET}/tf-{f.name}-0/",
                                                                              str(work / f"dl-tf-{r}")),
                    "boto3": lambda r, f=folder: plain.download(f"b3-{f.name}-0/", work / f"dl-b3-{r}"),
                    "mc cp": lambda r, f=folder: mc_cp(f"bench/{BUCKET}/mc-{f.name}-0/", f"{work}/dl-mc-{r}/"),
                },
            }
            print(f"\n{label} ({mb:.0f} MiB)")
            for direction, tools in ways.items():
                best: dict[str, float] = {}
                cpu: dict[str, float] = {}
                for r in range(args.rounds):
                    names = list(tools)
                    for tool in names[r % len(names):] + names[:r % len(names)]:  # no tool always first
                        way = tools[tool]
                        wall, used = timed_cpu(lambda: way(r))
                        if wall < best.get(tool, 1e9):
                            best[tool], cpu[tool] = wall, used
                        for leftover in work.glob("dl-*"):
                            shutil.rmtree(leftover)
                cells = "   ".join(f"{tool} {mb / s:7.1f} MiB/s ({cpu[tool]:.1f} s CPU)" for tool, s in best.items())
                print(f"  {direction:<8} {cells}   trainforge = {best['boto3'] / best['trainforge']:.2f}x boto3, "
                      f"{best['mc cp'] / best['trainforge']:.2f}x mc; load {os.getloadavg()[0]:.1f}")
            default.delete_prefix(f"s3://{BUCKET}/")

        if not args.no_sweep:
            large, small = list(datasets.values())
            print("\nsweep, trainforge: part size x threads, one large file (MiB/s up / down)")
            mb = size_of(large) / 2**20
            for chunk in (8, 16, 32, 64):
                cells = []
                for threads in (4, 8, 16):
                    s = store(threads, chunk)
                    up = timed(lambda: s.upload_dir(str(large), f"s3://{BUCKET}/sweep/"))
                    down = timed(lambda: s.download_prefix(f"s3://{BUCKET}/sweep/", str(work / "dl-sweep")))
                    shutil.rmtree(work / "dl-sweep")
                    s.close()
                    cells.append(f"{threads:>2} threads {mb / up:6.0f} / {mb / down:6.0f}")
                print(f"  {chunk:>2} MiB parts: " + "   ".join(cells))
            print("sweep, trainforge: threads, small files (files/s up / down)")
            count = len(list(small.iterdir()))
            for threads in (4, 8, 16, 32):
                s = store(threads)
                up = timed(lambda: s.upload_dir(str(small), f"s3://{BUCKET}/sweep-small/"))
                down = timed(lambda: s.download_prefix(f"s3://{BUCKET}/sweep-small/", str(work / "dl-sweep")))
                shutil.rmtree(work / "dl-sweep")
                print(f"  {threads:>2} threads: {count / up:6.0f} / {count / down:6.0f}")
    finally:
        minio.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
