"""LocalStore (``local://`` embedded store and ``file://``) and the pure parts
of trainforge.storage: real files under tmp_path, no mocks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from trainforge.config import load_settings
from trainforge.errors import ObjectNotFound, StorageError
from trainforge.storage import (
    NullProgress,
    ObjectInfo,
    ObjectStore,
    TransferProgress,
    TransferStats,
    open_store,
)
from trainforge.storage.base import relative_name, shard_objects
from trainforge.storage.local import LocalStore
from trainforge.uris import parse_uri

from tests.trees import read_tree, write_tree


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("TRAINFORGE_HOME", str(home))
    monkeypatch.delenv("TRAINFORGE_CONFIG", raising=False)
    return home


@pytest.fixture
def store(home: Path) -> LocalStore:
    opened = open_store("local://bucket/")
    assert isinstance(opened, LocalStore)
    return opened


def make_tree(root: Path) -> dict[str, bytes]:
    """Nested folders, an empty file, a file larger than one copy chunk."""
    files = {
        "a.txt": b"alpha",
        "empty": b"",
        "sub/b.bin": bytes(range(256)) * 10,
        "sub/deeper/c.txt": b"c" * 3,
        "sub/deeper/empty-too": b"",
        "big.bin": os.urandom(2 * 1024 * 1024 + 17),
    }
    return write_tree(root, files)


class Recorder:
    """A TransferProgress that remembers what it was told."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: tuple[int, int, str] | None = None
        self.bytes = 0
        self.files = 0
        self.finished = False

    def start(self, total_files: int, total_bytes: int, description: str) -> None:
        self.started = (total_files, total_bytes, description)

    def advance(self, nbytes: int) -> None:
        with self.lock:
            self.bytes += nbytes

    def file_done(self) -> None:
        with self.lock:
            self.files += 1

    def finish(self) -> None:
        self.finished = True


class FailAfter(Recorder):
    """Raises once ``limit`` bytes have been reported: a transfer dying midway."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def advance(self, nbytes: int) -> None:
        super().advance(nbytes)
        if self.bytes >= self.limit:
            raise OSError("simulated failure in the middle of a transfer")


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if ".tf-tmp-" in p.name]


# --- round trips -----------------------------------------------------------------

def test_prefix_round_trip_through_the_embedded_store(store: LocalStore, home: Path, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src")
    up = store.upload_dir(str(tmp_path / "src"), "local://bucket/data/run-1")
    assert (up.files, up.bytes) == (len(files), sum(map(len, files.values())))
    assert read_tree(home / "store" / "bucket" / "data" / "run-1") == files

    listed = store.list("local://bucket/data/run-1/")
    assert [o.key for o in listed] == sorted(f"data/run-1/{rel}" for rel in files)
    assert listed[0] == ObjectInfo("local://bucket/data/run-1/a.txt", "data/run-1/a.txt", 5, None)

    down = store.download_prefix("local://bucket/data/run-1", str(tmp_path / "dst"))
    assert (down.files, down.bytes) == (up.files, up.bytes)
    assert read_tree(tmp_path / "dst") == files
    assert no_temp_files(tmp_path / "dst") and no_temp_files(home)


def test_file_uris_are_plain_paths(home: Path, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src")
    out = tmp_path / "out"
    store = open_store(f"file://{out}/")
    assert isinstance(store, LocalStore)
    store.upload_dir(str(tmp_path / "src"), f"file://{out}/copy/")
    assert read_tree(out / "copy") == files
    assert store.local_path(f"file://{out}/copy/a.txt") == str(out / "copy" / "a.txt")
    store.download_prefix(f"file://{out}/copy", str(tmp_path / "back"))
    assert read_tree(tmp_path / "back") == files


def test_single_files_and_bytes(store: LocalStore, home: Path, tmp_path: Path) -> None:
    src = tmp_path / "model.tar.gz"
    src.write_bytes(b"weights")
    stats = store.upload_file(str(src), "local://bucket/models/")  # a prefix: keeps the name
    assert (stats.files, stats.bytes) == (1, 7)
    assert store.exists("local://bucket/models/model.tar.gz")
    store.upload_file(str(src), "local://bucket/models/renamed.bin")
    assert store.read_bytes("local://bucket/models/renamed.bin") == b"weights"

    dest = tmp_path / "dl"
    dest.mkdir()
    store.download_file("local://bucket/models/model.tar.gz", str(dest))  # into a folder
    store.download_file("local://bucket/models/model.tar.gz", str(tmp_path / "x" / "y.bin"))
    store.download_file("local://bucket/models/model.tar.gz", f"{tmp_path}/new-folder/")
    assert (dest / "model.tar.gz").read_bytes() == b"weights"
    assert (tmp_path / "new-folder" / "model.tar.gz").read_bytes() == b"weights"
    assert (tmp_path / "x" / "y.bin").read_bytes() == b"weights"

    store.write_bytes("local://bucket/status.json", b'{"ok": true}')
    assert store.read_bytes("local://bucket/status.json") == b'{"ok": true}'
    store.write_bytes("local://bucket/status.json", b"{}")
    assert store.read_bytes("local://bucket/status.json") == b"{}"
    assert store.local_path("local://bucket/status.json") == str(home / "store" / "bucket" / "status.json")


def test_single_object_uri_downloads_into_folder_by_basename(store: LocalStore, tmp_path: Path) -> None:
    store.write_bytes("local://bucket/data/train.csv", b"x,y\n")
    store.write_bytes("local://bucket/data/train.csv.bak", b"old")
    stats = store.download_prefix("local://bucket/data/train.csv", str(tmp_path / "ch"))
    assert stats.files == 1
    assert read_tree(tmp_path / "ch") == {"train.csv": b"x,y\n"}


def test_prefix_without_slash_is_a_folder_not_a_string_prefix(store: LocalStore) -> None:
    store.write_bytes("local://bucket/data/train/1", b"1")
    store.write_bytes("local://bucket/data/train2/2", b"2")
    assert [o.key for o in store.list("local://bucket/data/train")] == ["data/train/1"]
    assert [o.key for o in store.list("local://bucket/data/")] == ["data/train/1", "data/train2/2"]
    assert [o.key for o in store.list("local://bucket/")] == ["data/train/1", "data/train2/2"]
    assert store.exists("local://bucket/data/train") and store.exists("local://bucket/data/train/")
    assert not store.exists("local://bucket/data/tra")
    assert not store.exists("local://bucket/nothing/")


def test_progress_sees_every_byte_and_file(store: LocalStore, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src")
    progress = Recorder()
    store.upload_dir(str(tmp_path / "src"), "local://bucket/p/", progress=progress)
    total = sum(map(len, files.values()))
    assert progress.started == (len(files), total, "upload local://bucket/p/")
    assert (progress.bytes, progress.files, progress.finished) == (total, len(files), True)
    assert isinstance(progress, TransferProgress) and isinstance(NullProgress(), TransferProgress)


def test_delete_prefix_counts_and_prunes(store: LocalStore, home: Path, tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    store.upload_dir(str(tmp_path / "src"), "local://bucket/gone/")
    store.write_bytes("local://bucket/kept", b"k")
    assert store.delete_prefix("local://bucket/gone/") == 6
    assert not (home / "store" / "bucket" / "gone").exists()
    assert store.list("local://bucket/") == [ObjectInfo("local://bucket/kept", "kept", 1, None)]
    assert store.delete_prefix("local://bucket/gone/") == 0
    assert store.delete_prefix("local://nobucket/x/") == 0


def test_ensure_bucket_makes_the_folder(store: LocalStore, home: Path) -> None:
    store.ensure_bucket("local://fresh-bucket/any/key")
    assert (home / "store" / "fresh-bucket").is_dir()
    assert store.list("local://fresh-bucket/") == []


# --- sharding ----------------------------------------------------------------------

def test_sharding_splits_sorted_keys_round_robin(store: LocalStore, tmp_path: Path) -> None:
    names = [f"part-{i:02d}" for i in range(10)]
    for name in reversed(names):
        store.write_bytes(f"local://bucket/ds/{name}", name.encode())
    seen: list[str] = []
    for index in range(3):
        dest = tmp_path / f"host-{index}"
        stats = store.download_prefix("local://bucket/ds/", str(dest), shard=(index, 3))
        got = sorted(read_tree(dest))
        assert got == names[index::3]
        assert stats.files == len(got)
        seen += got
    assert sorted(seen) == names  # every key on exactly one host


def test_more_hosts_than_keys_leaves_some_hosts_empty(store: LocalStore, tmp_path: Path) -> None:
    store.write_bytes("local://bucket/one/only", b"1")
    assert store.download_prefix("local://bucket/one/", str(tmp_path / "h0"), shard=(0, 2)).files == 1
    assert store.download_prefix("local://bucket/one/", str(tmp_path / "h1"), shard=(1, 2)).files == 0


@pytest.mark.parametrize("shard", [(2, 2), (-1, 2), (0, 0), (1,), "0/2"])
def test_bad_shard_is_refused(store: LocalStore, tmp_path: Path, shard: object) -> None:
    store.write_bytes("local://bucket/s/x", b"x")
    with pytest.raises(ValueError, match="shard"):
        store.download_prefix("local://bucket/s/", str(tmp_path), shard=shard)  # type: ignore[arg-type]


def test_shard_objects_is_pure_and_complete() -> None:
    objs = [ObjectInfo(f"s3://b/k{i}", f"k{i}", i) for i in (3, 1, 2, 0, 4)]
    assert [o.key for o in shard_objects(objs, None)] == ["k0", "k1", "k2", "k3", "k4"]
    assert [o.key for o in shard_objects(objs, (1, 2))] == ["k1", "k3"]
    assert relative_name(parse_uri("s3://bkt/data/x"), "data/x") == "x"
    assert relative_name(parse_uri("s3://bkt/data/x"), "data/x/y/z") == "y/z"
    assert relative_name(parse_uri("s3://bkt/data/"), "data/x") == "x"


# --- failures ------------------------------------------------------------------------

def test_missing_data_names_the_uri(store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound, match=r"local://bucket/no/such/"):
        store.download_prefix("local://bucket/no/such/", str(tmp_path / "d"))
    with pytest.raises(ObjectNotFound, match=r"local://bucket/missing\.bin"):
        store.download_file("local://bucket/missing.bin", str(tmp_path / "m"))
    with pytest.raises(ObjectNotFound, match=r"local://bucket/missing\.json"):
        store.read_bytes("local://bucket/missing.json")
    assert not (tmp_path / "d").exists() and not (tmp_path / "m").exists()


def test_missing_local_source_names_the_path(store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=str(tmp_path / "nope")):
        store.upload_dir(str(tmp_path / "nope"), "local://bucket/x/")
    with pytest.raises(StorageError, match=str(tmp_path / "nope.bin")):
        store.upload_file(str(tmp_path / "nope.bin"), "local://bucket/x/")


def test_failed_write_leaves_no_partial_target(store: LocalStore, home: Path, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024))
    with pytest.raises(OSError, match="simulated"):
        store.upload_file(str(src), "local://bucket/art/big.bin", progress=FailAfter(1))
    assert not store.exists("local://bucket/art/big.bin")
    assert store.list("local://bucket/art/") == []
    assert no_temp_files(home)

    store.write_bytes("local://bucket/art/big.bin", b"previous version")
    with pytest.raises(OSError, match="simulated"):
        store.upload_file(str(src), "local://bucket/art/big.bin", progress=FailAfter(1))
    assert store.read_bytes("local://bucket/art/big.bin") == b"previous version"
    assert no_temp_files(home)


def test_failed_download_leaves_no_partial_file(store: LocalStore, tmp_path: Path) -> None:
    store.write_bytes("local://bucket/f/big.bin", os.urandom(3 * 1024 * 1024))
    dest = tmp_path / "dest"
    with pytest.raises(OSError, match="simulated"):
        store.download_prefix("local://bucket/f/", str(dest), progress=FailAfter(1))
    assert not dest.exists() or read_tree(dest) == {}
    assert no_temp_files(tmp_path)


def test_unwritable_destination_names_the_path(store: LocalStore, tmp_path: Path) -> None:
    store.write_bytes("local://bucket/w/x.bin", b"x")
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a folder")
    with pytest.raises(StorageError, match=str(blocker)) as caught:
        store.download_prefix("local://bucket/w/", str(blocker / "sub"))
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(StorageError, match=str(blocker)):
        open_store(f"file://{blocker}/").write_bytes(f"file://{blocker}/inside.json", b"{}")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file modes")
def test_read_only_folder_names_the_path(store: LocalStore, tmp_path: Path) -> None:
    store.write_bytes("local://bucket/w/x.bin", b"x")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(StorageError, match=str(locked)):
            store.download_prefix("local://bucket/w/", str(locked))
    finally:
        locked.chmod(0o700)


def test_read_only_filesystem_names_the_path(store: LocalStore) -> None:
    # /proc refuses new files even for root: a real "cannot write" without file modes.
    store.write_bytes("local://bucket/w/x.bin", b"x")
    with pytest.raises(StorageError, match="/proc/"):
        store.download_prefix("local://bucket/w/", "/proc/trainforge-test")


def test_temp_files_are_invisible(store: LocalStore, home: Path) -> None:
    store.write_bytes("local://bucket/v/real", b"r")
    (home / "store" / "bucket" / "v" / ".real.tf-tmp-0123456789ab").write_bytes(b"half")
    assert [o.key for o in store.list("local://bucket/v/")] == ["v/real"]


def test_bad_uri_is_a_storage_error(store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="ftp://"):
        store.list("ftp://host/x")
    with pytest.raises(StorageError, match="bucket"):
        open_store("s3://Bad_Bucket/x")


# --- surface -------------------------------------------------------------------------

def test_transfer_stats_rate() -> None:
    assert TransferStats(files=2, bytes=10 * 1024 * 1024, seconds=2.0).mb_per_s == 5.0
    assert TransferStats(files=0, bytes=0, seconds=0.0).mb_per_s == 0.0


def test_public_api_is_pinned(store: LocalStore) -> None:
    from trainforge import storage

    assert sorted(storage.__all__) == sorted([
        "ConditionalWrites", "NullProgress", "ObjectInfo", "ObjectStore", "RichProgress", "TransferProgress",
        "TransferStats", "open_store",
    ])
    assert isinstance(store, ObjectStore)
    assert isinstance(store, storage.ConditionalWrites)


def test_local_stores_do_not_import_boto3(home: Path) -> None:
    code = ("import sys, trainforge.storage as s; s.open_store('local://bkt/k'); "
            "s.open_store('file:///tmp/x'); assert 'boto3' not in sys.modules, 'boto3 imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})


def test_open_store_picks_s3_for_s3_uris(home: Path) -> None:
    settings = load_settings()
    settings.s3.endpoint_url = "http://127.0.0.1:1"
    store = open_store("s3://bucket/key", settings)
    assert type(store).__name__ == "S3Store"
    assert store.local_path("s3://bucket/key") is None


def test_s3_clients_are_cached_per_settings(home: Path) -> None:
    settings = load_settings()
    settings.s3.endpoint_url = "http://127.0.0.1:1"
    first, second = open_store("s3://bucket/a", settings), open_store("s3://other/b", settings)
    assert first.client is second.client  # type: ignore[attr-defined]
    changed = settings.model_copy(deep=True)
    changed.s3.endpoint_url = "http://127.0.0.1:2"
    assert open_store("s3://bucket/a", changed).client is not first.client  # type: ignore[attr-defined]


def test_rich_progress_draws_bytes_and_files(store: LocalStore, tmp_path: Path) -> None:
    import io

    from rich.console import Console
    from trainforge.storage import RichProgress

    files = make_tree(tmp_path / "src")
    out = io.StringIO()
    progress = RichProgress(console=Console(file=out, width=120, force_terminal=False))
    store.upload_dir(str(tmp_path / "src"), "local://bucket/rich/", progress=progress)
    store.download_prefix("local://bucket/rich/", str(tmp_path / "back"), progress=progress)
    text = out.getvalue()
    assert "upload local://bucket/rich/" in text and "download local://bucket/rich/" in text
    assert f"{len(files)}/{len(files)} files" in text


def test_only_storage_imports_boto3() -> None:
    import trainforge

    package = Path(trainforge.__file__).parent
    offenders = [
        str(path.relative_to(package)) for path in package.rglob("*.py")
        if "storage" not in path.relative_to(package).parts
        and any(line.lstrip().startswith((f"import {m}", f"from {m}"))
                for line in path.read_text().splitlines() for m in ("boto3", "botocore", "s3transfer"))
    ]
    assert offenders == []


def test_sweep_partial_removes_only_temp_files_under_the_prefix(store: LocalStore) -> None:
    from trainforge.storage.files import temp_path_for

    root = Path(store.root) / "bucket"
    (root / "job-a" / "output").mkdir(parents=True)
    (root / "job-b").mkdir(parents=True)
    (root / "job-a" / "output" / "kept.txt").write_text("whole")
    for target in (root / "job-a" / "output" / "model.tar.gz", root / "job-b" / "model.tar.gz"):
        Path(temp_path_for(str(target))).write_text("half")

    assert store.sweep_partial("local://bucket/job-a/") == 1
    assert sorted(p.name for p in (root / "job-a").rglob("*") if p.is_file()) == ["kept.txt"]
    assert len(list((root / "job-b").iterdir())) == 1  # another prefix is not touched


def test_a_cancelled_download_leaves_no_partial_file(store: LocalStore, tmp_path: Path) -> None:
    from trainforge.errors import TransferCancelled
    from trainforge.storage.files import COPY_CHUNK
    from trainforge.storage.progress import CancellableProgress

    source = Path(store.root) / "bucket" / "data"
    source.mkdir(parents=True)
    for index in range(3):  # three chunks of the kernel's copy each
        (source / f"part-{index}.bin").write_bytes(b"x" * (3 * COPY_CHUNK))
    seen = []

    def cancelled() -> bool:
        seen.append(1)
        return len(seen) > 2  # after two chunks of the first file

    with pytest.raises(TransferCancelled, match="stopped"):
        store.download_prefix("local://bucket/data/", str(tmp_path / "dst"),
                              progress=CancellableProgress(cancelled, "stopped"))
    left = [p for p in (tmp_path / "dst").rglob("*") if p.is_file()] if (tmp_path / "dst").exists() else []
    assert left == []


class WatchFolder(Recorder):
    """Records, after every file, what a reader of ``folder`` would see."""

    def __init__(self, folder: Path, fail_at: int | None = None) -> None:
        super().__init__()
        self.folder, self.fail_at, self.seen = folder, fail_at, []

    def file_done(self) -> None:
        super().file_done()
        self.seen.append(sorted(p.name for p in self.folder.rglob("*")) if self.folder.exists() else None)
        if self.files == self.fail_at:
            raise OSError("simulated failure after some files")


def test_a_new_folder_appears_whole_or_not_at_all(store: LocalStore, tmp_path: Path) -> None:
    """Many small files into a folder that does not exist: filled hidden, without a
    temp file per file, renamed into place at the end; a failure midway leaves
    neither the folder nor its hidden sibling."""
    files = {f"sub/{i:03d}.bin": os.urandom(200 + i) for i in range(30)}
    write_tree(Path(store.root) / "bucket" / "many", files)
    dest = tmp_path / "run" / "train"
    watch = WatchFolder(dest)
    store.download_prefix("local://bucket/many/", str(dest), progress=watch)
    assert watch.seen == [None] * len(files)  # nothing visible while it downloaded
    assert read_tree(dest) == files and no_temp_files(tmp_path)

    again = tmp_path / "run" / "again"
    with pytest.raises(OSError, match="simulated"):
        store.download_prefix("local://bucket/many/", str(again), progress=WatchFolder(again, fail_at=10))
    assert not again.exists() and sorted(p.name for p in (tmp_path / "run").iterdir()) == ["train"]

    # Into a folder that exists (what was there stays): file by file, each atomic.
    (again / "sub").mkdir(parents=True)
    (again / "kept.txt").write_text("mine")
    watch = WatchFolder(again)
    store.download_prefix("local://bucket/many/", str(again), progress=watch)
    assert read_tree(again) == {**files, "kept.txt": b"mine"} and no_temp_files(tmp_path)
    assert len(watch.seen[0]) == 3  # sub, kept.txt, and the first file in place


# --- the fast copy paths (storage.files.copy_fd) --------------------------------------

def test_fast_stage_in_copies_exactly_and_never_links_into_the_store(store: LocalStore, tmp_path: Path) -> None:
    """Kernel copy offload for a file of several chunks, whole reads for small
    ones: the same bytes, a file of its own (no hard link, no symlink), and
    writing the copy leaves the store as it was."""
    import zlib

    from trainforge.storage.files import COPY_CHUNK, SMALL_FILE

    files = {"big.bin": os.urandom(2 * COPY_CHUNK + 12345), "edge.bin": os.urandom(SMALL_FILE),
             **{f"small/{i:03d}.bin": os.urandom(100 + i) for i in range(40)}}
    write_tree(Path(store.root) / "bucket" / "fast", files)
    dest = tmp_path / "run" / "train"
    store.download_prefix("local://bucket/fast/", str(dest))
    got = read_tree(dest)
    assert {k: zlib.crc32(v) for k, v in got.items()} == {k: zlib.crc32(v) for k, v in files.items()}
    for rel in files:
        copy, original = dest / rel, Path(store.root) / "bucket" / "fast" / rel
        assert not copy.is_symlink() and copy.stat().st_nlink == 1 and original.stat().st_nlink == 1
        assert copy.stat().st_ino != original.stat().st_ino
        with open(copy, "r+b") as fh:  # the trainer writes into its copy, in place
            fh.write(b"changed by the trainer")
    assert read_tree(Path(store.root) / "bucket" / "fast") == files
    assert no_temp_files(dest)


def test_copy_falls_back_when_the_kernel_cannot_offload(tmp_path: Path) -> None:
    """A source neither copy_file_range nor sendfile takes (a pipe) is copied
    through user space, in chunks, with progress for each."""
    from trainforge.storage.files import COPY_CHUNK, copy_fd

    data = os.urandom(COPY_CHUNK + 999)
    read_end, write_end = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write_end, data), os.close(write_end)))
    writer.start()
    seen: list[int] = []
    target = tmp_path / "out.bin"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        copied = copy_fd(read_end, fd, len(data), str(target), seen.append)
    finally:
        os.close(fd)
        os.close(read_end)
        writer.join()
    assert copied == len(data) == sum(seen) and target.read_bytes() == data


def test_a_source_that_shrank_midway_is_refused_and_leaves_nothing(store: LocalStore, tmp_path: Path) -> None:
    from trainforge.errors import IntegrityError
    from trainforge.storage.files import COPY_CHUNK

    source = Path(store.root) / "bucket" / "shrink" / "data.bin"
    source.parent.mkdir(parents=True)
    source.write_bytes(os.urandom(3 * COPY_CHUNK))

    class Truncates(Recorder):
        def advance(self, nbytes: int) -> None:
            super().advance(nbytes)
            os.truncate(source, COPY_CHUNK)  # another writer, after the first chunk

    with pytest.raises(IntegrityError, match="changed while being copied"):
        store.download_prefix("local://bucket/shrink/", str(tmp_path / "dst"), progress=Truncates())
    assert not (tmp_path / "dst").exists() or read_tree(tmp_path / "dst") == {}
    assert no_temp_files(tmp_path)
