"""What the model registry's conditional writes cost, and how they behave under
contention, on a real MinIO (started here from the test bed's binary) and on the
embedded store.

    .venv/bin/python bench/registry_bench.py [--rounds 200] [--threads 8]

Prints, per store: a plain write vs a compare-and-swap (read with ETag +
If-Match write) and a promote (version check + alias read + CAS), medians; then
N threads promoting at once for R rounds: moves that won, conflicts, and whether
the alias history lost any winner.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "sdk"), str(ROOT)]


def median_ms(fn: Callable[[int], object], n: int) -> float:
    times = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def bench(label: str, root: str, settings: object, rounds: int, threads: int) -> None:
    from trainforge.errors import AliasConflict
    from trainforge.registry import ModelRegistry
    from trainforge.registry.registry import _json
    from trainforge.spec import TrainingJob
    from trainforge.storage import open_store

    store = open_store(root, settings)  # type: ignore[arg-type]
    store.ensure_bucket(root)
    doc = _json({"version": 1, "history": [{"version": 1}] * 20})
    plain = median_ms(lambda i: store.write_bytes(root + "bench/plain.json", doc), rounds)
    store.write_bytes(root + "bench/cas.json", doc)

    def cas(i: int) -> None:
        _, etag = store.read_with_etag(root + "bench/cas.json")  # type: ignore[attr-defined]
        store.replace_if(root + "bench/cas.json", doc, etag)  # type: ignore[attr-defined]

    swapped = median_ms(cas, rounds)
    registry = ModelRegistry(root + "registry/", settings=settings)  # type: ignore[arg-type]
    model = root + "bench/model.tar.gz"
    store.write_bytes(model, b"\x1f\x8b" + b"\0" * 1024)
    job = TrainingJob.model_validate({"metadata": {"name": "bench"}, "spec": {"image": "/x"}, "status": {
        "phase": "Completed", "finalMetrics": {"acc": 0.9}, "artifacts": {"model": model}}})
    registered = median_ms(lambda i: registry.register(job, "bench", backend="process", environ={}), 20)
    versions = len(registry.versions("bench"))
    promoted = median_ms(lambda i: registry.promote("bench", 1 + i % versions, "production", environ={}), rounds)
    print(f"{label}: plain write {plain:.2f} ms, CAS (read + conditional write) {swapped:.2f} ms "
          f"({swapped / plain:.1f}x), promote {promoted:.2f} ms, register (1 KiB model) {registered:.1f} ms")

    won = conflicts = 0
    moves_before = 0
    for r in range(rounds // 10):
        barrier = threading.Barrier(threads)
        current = registry.alias("bench", "production").version
        results: list[bool] = []

        def promote(v: int, expect: int | None = current) -> None:
            barrier.wait()
            try:
                registry.promote("bench", v, "production", expect=expect, environ={})
                results.append(True)
            except AliasConflict:
                results.append(False)

        candidates = [v for v in range(1, versions + 1) if v != current][:threads]
        barrier = threading.Barrier(len(candidates))
        workers = [threading.Thread(target=promote, args=(v,)) for v in candidates]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        won += sum(results)
        conflicts += results.count(False)
        moves_before += 1
    history = registry.alias("bench", "production").document["history"]
    print(f"{label}: {moves_before} rounds of {threads} racing promotions: {won} won "
          f"(exactly one per round: {won == moves_before}), {conflicts} conflicts, "
          f"newest history entries chain without a gap: "
          f"{all(a['from'] == b['version'] for a, b in zip(history, history[1:]))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    from tests.infra.minio_server import start_minio
    from trainforge.config import Settings

    with tempfile.TemporaryDirectory(prefix="registry-bench-") as tmp:
        home = Path(tmp)
        bench("embedded store", "local://registry-bench/", Settings(home=home), args.rounds, args.threads)
        server = start_minio(home / "minio", home / "logs")
        try:
            settings = Settings.model_validate({"home": str(home), "s3": {
                "endpoint_url": server.endpoint, "access_key_id": server.access_key,
                "secret_access_key": server.secret_key, "region": server.region}})
            import boto3

            boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=server.access_key,
                         aws_secret_access_key=server.secret_key, region_name=server.region).create_bucket(
                Bucket="registry-bench")
            bench("MinIO", "s3://registry-bench/", settings, args.rounds, args.threads)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
