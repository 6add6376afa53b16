"""S3Store against the real MinIO server (fixtures ``minio`` and
``minio_bucket`` from tests/conftest.py). No mocks: every failure here is one
MinIO, the network or the disk really produced."""

from __future__ import annotations

import base64
import os
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from trainforge.config import S3Settings, Settings
from trainforge.errors import (
    IntegrityError,
    ObjectNotFound,
    StorageError,
    StorageUnreachable,
)
from trainforge.storage import ObjectStore, open_store

from tests.trees import read_tree, write_tree

pytestmark = pytest.mark.minio

MiB = 1024 * 1024


def settings_for(bucket: Any, home: Path, **s3: Any) -> Settings:
    """Settings reaching ``bucket``'s MinIO; small multipart sizes keep tests fast."""
    values = {"endpoint_url": bucket.endpoint, "access_key_id": bucket.access_key,
              "secret_access_key": bucket.secret_key, "region": bucket.region,
              "multipart_threshold_mb": 6, "multipart_chunk_mb": 5, "max_concurrency": 8}
    values.update(s3)
    return Settings(home=home, s3=S3Settings(**values))


@pytest.fixture
def store(minio_bucket: Any, tmp_path: Path) -> ObjectStore:
    return open_store(minio_bucket.uri(), settings_for(minio_bucket, tmp_path / "home"))


class FailAfter:
    """A progress sink that raises once ``limit`` bytes were reported: a
    transfer dying midway, from inside the transfer's own threads."""

    def __init__(self, limit: int) -> None:
        self.limit, self.seen = limit, 0

    def start(self, total_files: int, total_bytes: int, description: str) -> None: ...
    def file_done(self) -> None: ...
    def finish(self) -> None: ...

    def advance(self, nbytes: int) -> None:
        self.seen += nbytes
        if self.seen >= self.limit:
            raise OSError("simulated failure in the middle of a transfer")


class Counted:
    """A progress sink that adds up the bytes reported (taken-back bytes subtract)."""

    def __init__(self) -> None:
        self.total = 0
        self.lock = threading.Lock()

    def start(self, total_files: int, total_bytes: int, description: str) -> None: ...
    def file_done(self) -> None: ...
    def finish(self) -> None: ...

    def advance(self, nbytes: int) -> None:
        with self.lock:
            self.total += nbytes


def make_dataset(root: Path, small: int = 120, large_mb: int = 12) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for i in range(small):
        files[f"shard-{i % 4}/sample-{i:04d}.bin"] = os.urandom(i * 37)  # includes an empty file
    files["weights/large.bin"] = os.urandom(large_mb * MiB)
    return write_tree(root, files)


def open_uploads(bucket: Any, key: str) -> list[dict[str, Any]]:
    """The unfinished multipart uploads of ``key`` (MinIO lists them only for an exact object name)."""
    return bucket.s3_client().list_multipart_uploads(Bucket=bucket.name, Prefix=key).get("Uploads", [])


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_prefix_round_trip_small_files_and_a_multipart_one(store: ObjectStore, minio_bucket: Any, tmp_path: Path) -> None:
    files = make_dataset(tmp_path / "src")
    up = store.upload_dir(str(tmp_path / "src"), minio_bucket.uri("datasets/run"))
    assert (up.files, up.bytes) == (len(files), sum(map(len, files.values())))

    listed = store.list(minio_bucket.uri("datasets/run/"))
    assert [o.key for o in listed] == sorted(f"datasets/run/{k}" for k in files)
    large = next(o for o in listed if o.key.endswith("large.bin"))
    assert large.size == 12 * MiB and large.etag and large.etag.endswith("-3")  # 3 parts of <= 5 MiB

    down = store.download_prefix(minio_bucket.uri("datasets/run"), str(tmp_path / "dst"))
    assert (down.files, down.bytes) == (up.files, up.bytes)
    assert read_tree(tmp_path / "dst") == files
    print(f"\nupload   {up}\ndownload {down}")


def test_uploads_carry_a_whole_object_checksum(store: ObjectStore, minio_bucket: Any, tmp_path: Path) -> None:
    small, large = b"tiny payload", os.urandom(7 * MiB)
    (tmp_path / "small.txt").write_bytes(small)
    (tmp_path / "large.bin").write_bytes(large)
    store.upload_file(str(tmp_path / "small.txt"), minio_bucket.uri("c/"))
    store.upload_file(str(tmp_path / "large.bin"), minio_bucket.uri("c/"))
    s3 = minio_bucket.s3_client()
    for key, data in (("c/small.txt", small), ("c/large.bin", large)):
        head = s3.head_object(Bucket=minio_bucket.name, Key=key, ChecksumMode="ENABLED")
        crc = zlib.crc32(data)
        assert head["Metadata"]["tf-crc32"] == f"{crc:08x}"
        assert head["ChecksumCRC32"] == base64.b64encode(crc.to_bytes(4, "big")).decode()


@pytest.mark.parametrize("size", [1000, 8 * MiB], ids=["single-request", "multipart"])
def test_download_refuses_bytes_that_do_not_match_their_checksum(store: ObjectStore, minio_bucket: Any, tmp_path: Path, size: int) -> None:
    # An object whose recorded CRC32 is not the CRC32 of its bytes, as a
    # corrupted or tampered object would be.
    data = os.urandom(size)
    wrong = f"{zlib.crc32(data) ^ 1:08x}"
    minio_bucket.s3_client().put_object(Bucket=minio_bucket.name, Key="bad/object.bin", Body=data,
                                        Metadata={"tf-crc32": wrong})
    dest = tmp_path / "dest"
    with pytest.raises(IntegrityError, match=r"s3://.*/bad/object\.bin"):
        store.download_prefix(minio_bucket.uri("bad/"), str(dest))
    with pytest.raises(IntegrityError, match=r"bad/object\.bin"):
        store.download_file(minio_bucket.uri("bad/object.bin"), str(dest / "one.bin"))
    assert not dest.exists() or leftovers(dest) == []


def test_sharded_download_splits_keys_between_hosts(store: ObjectStore, minio_bucket: Any, tmp_path: Path) -> None:
    names = [f"part-{i:03d}.rec" for i in range(11)]
    for name in names:
        store.write_bytes(minio_bucket.uri(f"shards/{name}"), name.encode())
    got: list[str] = []
    for index in range(4):
        dest = tmp_path / f"host-{index}"
        stats = store.download_prefix(minio_bucket.uri("shards/"), str(dest), shard=(index, 4))
        mine = sorted(read_tree(dest)) if dest.exists() else []
        assert mine == names[index::4] and stats.files == len(mine)
        got += mine
    assert sorted(got) == names


def test_single_object_uri_and_folder_markers(store: ObjectStore, minio_bucket: Any, tmp_path: Path) -> None:
    s3 = minio_bucket.s3_client()
    s3.put_object(Bucket=minio_bucket.name, Key="d/", Body=b"")  # what consoles create for a "folder"
    store.write_bytes(minio_bucket.uri("d/model.tar.gz"), b"weights")
    store.write_bytes(minio_bucket.uri("d/model.tar.gz.sha"), b"other")
    one = store.download_prefix(minio_bucket.uri("d/model.tar.gz"), str(tmp_path / "one"))
    assert one.files == 1 and read_tree(tmp_path / "one") == {"model.tar.gz": b"weights"}
    both = store.download_prefix(minio_bucket.uri("d/"), str(tmp_path / "all"))
    assert both.files == 2 and sorted(read_tree(tmp_path / "all")) == ["model.tar.gz", "model.tar.gz.sha"]


def test_bytes_exists_delete(store: ObjectStore, minio_bucket: Any) -> None:
    uri = minio_bucket.uri("meta/status.json")
    assert not store.exists(uri)
    store.write_bytes(uri, b'{"phase": "Training"}')
    assert store.read_bytes(uri) == b'{"phase": "Training"}'
    assert store.exists(uri) and store.exists(minio_bucket.uri("meta")) and not store.exists(minio_bucket.uri("met"))
    store.write_bytes(minio_bucket.uri("meta/other"), b"")
    assert store.delete_prefix(minio_bucket.uri("meta/")) == 2
    assert store.list(minio_bucket.uri("meta/")) == [] and not store.exists(uri)
    assert store.local_path(uri) is None


def test_missing_bucket_and_key_name_the_uri(store: ObjectStore, minio_bucket: Any, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound, match=r"no object at s3://.*/nothing\.bin"):
        store.download_file(minio_bucket.uri("nothing.bin"), str(tmp_path / "x"))
    with pytest.raises(ObjectNotFound, match=r"no objects at s3://.*/empty/"):
        store.download_prefix(minio_bucket.uri("empty/"), str(tmp_path / "x"))
    with pytest.raises(ObjectNotFound, match=r"no object at s3://.*/nothing\.json"):
        store.read_bytes(minio_bucket.uri("nothing.json"))
    with pytest.raises(ObjectNotFound, match=r"bucket 'no-such-bucket-tf' does not exist"):
        store.read_bytes("s3://no-such-bucket-tf/key")
    with pytest.raises(ObjectNotFound, match=r"bucket 'no-such-bucket-tf' does not exist"):
        store.download_prefix("s3://no-such-bucket-tf/data/", str(tmp_path / "x"))
    with pytest.raises(ObjectNotFound, match=r"s3://no-such-bucket-tf/model\.bin"):
        store.download_file("s3://no-such-bucket-tf/model.bin", str(tmp_path / "x"))
    (tmp_path / "f").write_bytes(b"f")
    with pytest.raises(ObjectNotFound, match=r"no-such-bucket-tf"):
        store.upload_file(str(tmp_path / "f"), "s3://no-such-bucket-tf/f")
    assert not store.exists("s3://no-such-bucket-tf/key")
    assert not (tmp_path / "x").exists()


def test_ensure_bucket_creates_once(minio_bucket: Any, tmp_path: Path) -> None:
    name = f"{minio_bucket.name[:50]}-new"
    store = open_store(f"s3://{name}/", settings_for(minio_bucket, tmp_path))
    store.ensure_bucket(f"s3://{name}/")
    store.ensure_bucket(f"s3://{name}/x")  # idempotent
    store.write_bytes(f"s3://{name}/x", b"x")
    assert store.read_bytes(f"s3://{name}/x") == b"x"
    store.delete_prefix(f"s3://{name}/")
    minio_bucket.s3_client().delete_bucket(Bucket=name)


def test_refused_endpoint_fails_fast_naming_it(minio_bucket: Any, tmp_path: Path) -> None:
    settings = settings_for(minio_bucket, tmp_path, endpoint_url="http://127.0.0.1:1")
    store = open_store("s3://somewhere/x", settings)
    started = time.monotonic()
    with pytest.raises(StorageUnreachable, match=r"cannot reach S3 endpoint http://127\.0\.0\.1:1"):
        store.download_prefix("s3://somewhere/data/", str(tmp_path / "d"))
    assert time.monotonic() - started < 10
    (tmp_path / "f").write_bytes(b"f")
    with pytest.raises(StorageUnreachable, match=r"http://127\.0\.0\.1:1.*s3://somewhere/f"):
        store.upload_file(str(tmp_path / "f"), "s3://somewhere/")


@pytest.mark.parametrize("access_key", ["right", "unknown-user"])
def test_bad_credentials_are_named(minio_bucket: Any, tmp_path: Path, access_key: str) -> None:
    key = minio_bucket.access_key if access_key == "right" else "unknown-user"
    store = open_store(minio_bucket.uri(), settings_for(
        minio_bucket, tmp_path, access_key_id=key, secret_access_key="wrong-secret"))
    with pytest.raises(StorageUnreachable, match=r"credentials") as caught:
        store.list(minio_bucket.uri("data/"))
    assert minio_bucket.name in str(caught.value) and minio_bucket.endpoint in str(caught.value)
    with pytest.raises(StorageUnreachable, match=minio_bucket.name):
        store.download_file(minio_bucket.uri("model.bin"), str(tmp_path / "m"))


def test_standard_aws_environment_is_enough(minio_bucket: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in minio_bucket.env().items():
        monkeypatch.setenv(name, value)
    store = open_store(minio_bucket.uri(), Settings(home=tmp_path))  # no trainforge S3 settings
    store.write_bytes(minio_bucket.uri("env/x"), b"via AWS_ENDPOINT_URL")
    assert store.read_bytes(minio_bucket.uri("env/x")) == b"via AWS_ENDPOINT_URL"


@pytest.mark.parametrize("size", [3 * MiB, 12 * MiB], ids=["single-request", "multipart"])
def test_interrupted_download_leaves_nothing_visible(store: ObjectStore, minio_bucket: Any, tmp_path: Path, size: int) -> None:
    (tmp_path / "big.bin").write_bytes(os.urandom(size))
    store.upload_file(str(tmp_path / "big.bin"), minio_bucket.uri("art/big.bin"))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "big.bin").write_bytes(b"the previous, complete version")
    with pytest.raises(Exception, match="simulated"):
        store.download_prefix(minio_bucket.uri("art/"), str(dest), progress=FailAfter(MiB))
    assert leftovers(dest) == [dest / "big.bin"]
    assert (dest / "big.bin").read_bytes() == b"the previous, complete version"


def test_interrupted_upload_leaves_no_object(store: ObjectStore, minio_bucket: Any, tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(os.urandom(12 * MiB))
    with pytest.raises(Exception, match="simulated"):
        store.upload_file(str(tmp_path / "big.bin"), minio_bucket.uri("up/big.bin"), progress=FailAfter(MiB))
    assert store.list(minio_bucket.uri("up/")) == []
    assert open_uploads(minio_bucket, "up/big.bin") == []  # the multipart upload was aborted


def test_unwritable_download_target_names_the_path(store: ObjectStore, minio_bucket: Any, tmp_path: Path) -> None:
    store.write_bytes(minio_bucket.uri("w/x.bin"), b"x")
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a folder")
    with pytest.raises(StorageError, match=str(blocker)):
        store.download_prefix(minio_bucket.uri("w/"), str(blocker / "sub"))


def test_endpoint_that_is_not_s3_is_named(tmp_path: Path) -> None:
    # A web server that is not S3 (a wrong port, a proxy): every request gets a bare 404.
    import http.server
    import threading

    class NotS3(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = do_PUT = do_POST = _answer

        def log_message(self, *args: object) -> None: ...

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotS3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        settings = Settings(home=tmp_path, s3=S3Settings(endpoint_url=endpoint, access_key_id="a",
                                                         secret_access_key="b"))
        store = open_store("s3://bucket/x", settings)
        with pytest.raises(StorageUnreachable, match=rf"{endpoint} does not answer like an S3 endpoint"):
            store.download_prefix("s3://bucket/data/", str(tmp_path / "d"))
        with pytest.raises(StorageUnreachable, match="does not answer like an S3 endpoint"):
            store.read_bytes("s3://bucket/model.bin")
    finally:
        server.shutdown()
        server.server_close()


def test_a_multipart_download_is_checked_from_its_parts_without_reading_it_again(
        store: ObjectStore, minio_bucket: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole object's CRC32 is folded from the ranged GETs' pieces as
    they are written (storage/crc.py); the file is not read back."""
    from trainforge.storage import s3 as s3_module

    data = os.urandom(17 * MiB + 3)  # 4 parts of <= 5 MiB, the last one short
    (tmp_path / "big.bin").write_bytes(data)
    store.upload_file(str(tmp_path / "big.bin"), minio_bucket.uri("parts/"))

    def no_second_read(path: str) -> int:
        raise AssertionError(f"{path} was read again to check its CRC32")

    monkeypatch.setattr(s3_module, "crc32_file", no_second_read)
    store.download_prefix(minio_bucket.uri("parts/"), str(tmp_path / "dst"))
    assert zlib.crc32((tmp_path / "dst" / "big.bin").read_bytes()) == zlib.crc32(data)


def test_a_large_download_is_parallel_ranges_written_in_place(
        store: ObjectStore, minio_bucket: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the multipart threshold a download is ranged GETs of one part
    each, pinned to the object's ETag, each thread writing its own range
    (storage/ranged.py): s3transfer is not involved on the success path."""
    data = os.urandom(23 * MiB + 11)  # 5 parts of <= 5 MiB, the last one short
    (tmp_path / "big.bin").write_bytes(data)
    store.upload_file(str(tmp_path / "big.bin"), minio_bucket.uri("ranged/big.bin"))
    asked: list[tuple[int, int, str | None]] = []
    lean = store._lean  # type: ignore[attr-defined]
    open_range = lean.open_range

    def recorded(bucket: str, key: str, first: int, last: int, etag: str | None) -> Any:
        asked.append((first, last, etag))
        return open_range(bucket, key, first, last, etag)

    def no_s3transfer(*args: Any, **kwargs: Any) -> int:
        raise AssertionError("s3transfer was used")

    monkeypatch.setattr(lean, "open_range", recorded)
    monkeypatch.setattr(store, "_get_through_s3transfer", no_s3transfer)
    store.download_file(minio_bucket.uri("ranged/big.bin"), str(tmp_path / "dst.bin"))
    assert (tmp_path / "dst.bin").read_bytes() == data
    etag = minio_bucket.s3_client().head_object(Bucket=minio_bucket.name, Key="ranged/big.bin")["ETag"]
    assert sorted(asked) == [(s, min(s + 5 * MiB, len(data)) - 1, etag) for s in range(0, len(data), 5 * MiB)]


def test_a_large_upload_is_lean_parts_read_in_place_and_checked_whole(
        store: ObjectStore, minio_bucket: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the multipart threshold an upload is lean UploadParts, each with
    its CRC32 (storage/multipart.py), completed with the whole file's CRC32
    that MinIO checks against the parts': s3transfer is not involved."""
    data = os.urandom(23 * MiB + 11)  # 5 parts of <= 5 MiB, the last one short
    (tmp_path / "big.bin").write_bytes(data)
    sent: list[int] = []
    lean = store._lean  # type: ignore[attr-defined]
    put_part = lean.put_part

    def recorded(bucket: str, key: str, upload_id: str, number: int, body: Any, crc_b64: str) -> Any:
        sent.append(number)
        return put_part(bucket, key, upload_id, number, body, crc_b64)

    def no_s3transfer() -> None:
        raise AssertionError("s3transfer was used")

    monkeypatch.setattr(lean, "put_part", recorded)
    monkeypatch.setattr(store, "_transfers", no_s3transfer)
    store.upload_file(str(tmp_path / "big.bin"), minio_bucket.uri("parted/big.bin"))
    assert sorted(sent) == [1, 2, 3, 4, 5]
    head = minio_bucket.s3_client().head_object(Bucket=minio_bucket.name, Key="parted/big.bin", ChecksumMode="ENABLED")
    crc = zlib.crc32(data)
    assert head["ETag"].endswith('-5"') and head["ContentLength"] == len(data)
    assert head["Metadata"]["tf-crc32"] == f"{crc:08x}"
    assert head["ChecksumCRC32"] == base64.b64encode(crc.to_bytes(4, "big")).decode()
    assert head.get("ChecksumType") == "FULL_OBJECT"
    store.download_file(minio_bucket.uri("parted/big.bin"), str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data


def test_a_part_the_server_refuses_falls_back_to_s3transfer_and_leaves_no_upload(
        store: ObjectStore, minio_bucket: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Part 3 is sent with a CRC32 that is not its bytes': MinIO refuses it.
    The lean attempt is aborted (its upload gone, progress taken back) and
    s3transfer sends the file: stored exact, progress counting each byte once."""
    data = os.urandom(17 * MiB)
    (tmp_path / "big.bin").write_bytes(data)
    lean = store._lean  # type: ignore[attr-defined]
    put_part = lean.put_part
    refused: list[int] = []

    def corrupting(bucket: str, key: str, upload_id: str, number: int, body: Any, crc_b64: str) -> Any:
        if number == 3:
            crc_b64 = base64.b64encode((zlib.crc32(body) ^ 1).to_bytes(4, "big")).decode()
        etag = put_part(bucket, key, upload_id, number, body, crc_b64)
        if etag is None:
            refused.append(number)
        return etag

    monkeypatch.setattr(lean, "put_part", corrupting)
    progress = Counted()
    store.upload_file(str(tmp_path / "big.bin"), minio_bucket.uri("refused/big.bin"), progress=progress)
    assert refused == [3]
    assert progress.total == len(data)
    s3 = minio_bucket.s3_client()
    assert s3.get_object(Bucket=minio_bucket.name, Key="refused/big.bin")["Body"].read() == data
    assert open_uploads(minio_bucket, "refused/big.bin") == []


def test_a_file_changed_after_its_crc_was_taken_is_not_stored(
        store: ObjectStore, minio_bucket: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file rewritten (same size) between the CRC32 pass and the upload: the
    parts' CRCs do not add up to the CRC32 the object would carry, so the
    upload is aborted naming the file, and nothing is stored."""
    from trainforge.storage import s3 as s3_module

    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(12 * MiB))
    crc32_file = s3_module.crc32_file

    def then_rewritten(name: str) -> int:
        crc = crc32_file(name)
        path.write_bytes(os.urandom(12 * MiB))
        return crc

    monkeypatch.setattr(s3_module, "crc32_file", then_rewritten)
    with pytest.raises(IntegrityError, match=r"big\.bin changed while it was being uploaded"):
        store.upload_file(str(path), minio_bucket.uri("changed/big.bin"))
    assert store.list(minio_bucket.uri("changed/")) == []
    assert open_uploads(minio_bucket, "changed/big.bin") == []


def test_a_large_object_replaced_mid_download_is_never_mixed(
        store: ObjectStore, minio_bucket: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every range is asked for with If-Match: the object's ETag at the start.
    Replaced after the first range, the download fails naming the object (the
    fallback is pinned to the same ETag) and leaves no file, never one made of
    both versions."""
    old, new = os.urandom(12 * MiB), os.urandom(12 * MiB)
    (tmp_path / "v1.bin").write_bytes(old)
    (tmp_path / "v2.bin").write_bytes(new)
    uri = minio_bucket.uri("swap/big.bin")
    store.upload_file(str(tmp_path / "v1.bin"), uri)
    lean = store._lean  # type: ignore[attr-defined]
    open_range = lean.open_range
    replaced = threading.Event()
    lock = threading.Lock()

    def replace_after_the_first(bucket: str, key: str, first: int, last: int, etag: str | None) -> Any:
        with lock:
            if not replaced.is_set():
                body = open_range(bucket, key, first, last, etag)
                store.upload_file(str(tmp_path / "v2.bin"), uri)
                replaced.set()
                return body
        return open_range(bucket, key, first, last, etag)

    monkeypatch.setattr(lean, "open_range", replace_after_the_first)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(StorageError, match=r"swap/big\.bin was replaced while it was being downloaded"):
        store.download_file(uri, str(dest / "big.bin"))
    assert leftovers(dest) == []


def test_small_files_take_the_lean_requests_and_arrive_exact(
        store: ObjectStore, minio_bucket: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small files are sent and fetched by storage/lean.py (signed by botocore's
    signer, no botocore put_object/get_object), keys that need quoting
    included, each carrying the CRC32 of its bytes."""
    files = {name: os.urandom(i * 997) for i, name in enumerate(
        ["empty.bin", "with space.bin", "plus+sign.bin", "pct%41.bin", "tilde~é.bin", "deep/er/x.bin"])}
    write_tree(tmp_path / "src", files)

    def no_boto(**kwargs: Any) -> None:
        raise AssertionError(f"botocore called for {kwargs.get('Key')}")

    for call in ("get_object", "put_object"):
        monkeypatch.setattr(store.client, call, no_boto)  # type: ignore[attr-defined]
    store.upload_dir(str(tmp_path / "src"), minio_bucket.uri("lean/"))
    store.download_prefix(minio_bucket.uri("lean/"), str(tmp_path / "dst"))
    assert read_tree(tmp_path / "dst") == files
    wire = store._lean._wire  # type: ignore[attr-defined]
    assert wire is not None and wire._idle, "plain HTTP: the requests went on kept-alive sockets (wire.py)"
    head = minio_bucket.s3_client().head_object(Bucket=minio_bucket.name, Key="lean/plus+sign.bin",
                                                ChecksumMode="ENABLED")
    crc = zlib.crc32(files["plus+sign.bin"])
    assert head["Metadata"]["tf-crc32"] == f"{crc:08x}"
    assert head["ChecksumCRC32"] == base64.b64encode(crc.to_bytes(4, "big")).decode()


def test_a_listing_of_many_pages_is_lean_and_equals_boto3s(
        store: ObjectStore, minio_bucket: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Listings are lean.py's ListObjectsV2 pages (keys URL-encoded by the
    server, decoded here), continuation tokens followed: the same objects,
    sizes and ETags as botocore's paginator lists."""
    from concurrent.futures import ThreadPoolExecutor

    names = [f"many/{i:04d}.bin" for i in range(1003)] + [
        "many/with space.bin", "many/plus+sign.bin", "many/pct%41.bin", "many/tilde~é.bin", "many/a&b<c>.bin"]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: store.write_bytes(minio_bucket.uri(n), n.encode()), names))
    store.write_bytes(minio_bucket.uri("many-not/x.bin"), b"outside the prefix")
    paginator = minio_bucket.s3_client().get_paginator("list_objects_v2")
    expected = sorted((o["Key"], o["Size"], o["ETag"].strip('"'))
                      for page in paginator.paginate(Bucket=minio_bucket.name, Prefix="many/")
                      for o in page["Contents"])

    def no_paginator(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("botocore's paginator was used")

    monkeypatch.setattr(store.client, "get_paginator", no_paginator)  # type: ignore[attr-defined]
    listed = store.list(minio_bucket.uri("many/"))
    assert [(o.key, o.size, o.etag) for o in listed] == expected
    assert len(listed) == len(names)


def test_a_body_cut_short_is_retried_then_named_and_leaves_nothing(tmp_path: Path) -> None:
    # A server that promises 100,000 bytes and hangs up after 10: the lean GET
    # gives up, the full boto3 path retries, and the error names the object.
    import http.server
    import threading

    gets: list[str] = []

    class CutShort(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _headers(self) -> None:
            self.send_response(200)
            for name, value in (("Content-Length", "100000"), ("ETag", '"abc"'),
                                ("x-amz-request-id", "1"), ("Connection", "close")):
                self.send_header(name, value)
            self.end_headers()

        def do_HEAD(self) -> None:
            self._headers()

        def do_GET(self) -> None:
            gets.append(self.path)
            self._headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args: object) -> None: ...

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CutShort)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        store = open_store("s3://bucket/x", Settings(home=tmp_path, s3=S3Settings(
            endpoint_url=endpoint, access_key_id="a", secret_access_key="b")))
        dest = tmp_path / "dest"
        dest.mkdir()
        with pytest.raises(StorageError, match=r"s3://bucket/data/x\.bin") as caught:
            store.download_file("s3://bucket/data/x.bin", str(dest / "x.bin"))
        assert not isinstance(caught.value, IntegrityError)  # a cut, not corrupt bytes
        assert leftovers(dest) == []
        assert len(gets) == 4  # the lean GET, then the full path's 3 attempts
    finally:
        server.shutdown()
        server.server_close()


def test_a_range_cut_short_falls_back_to_s3transfer_and_arrives_exact(tmp_path: Path) -> None:
    """A server that hangs up midway through one ranged GET: the parallel
    attempt is abandoned (its connection dropped, its progress taken back) and
    s3transfer fetches the object again, exact, progress counting each byte once."""
    import http.server

    data = os.urandom(17 * MiB)
    crc = f"{zlib.crc32(data):08x}"
    cut_done = threading.Event()
    gets: list[str] = []

    class Serving(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _headers(self, status: int, length: int, extra: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in {"Content-Length": str(length), "ETag": '"v1"', "x-amz-request-id": "1",
                                "x-amz-meta-tf-crc32": crc, **extra}.items():
                self.send_header(name, value)
            self.end_headers()

        def do_HEAD(self) -> None:
            self._headers(200, len(data), {})

        def do_GET(self) -> None:
            first_text, last_text = self.headers["Range"].removeprefix("bytes=").split("-")
            first, last = int(first_text), int(last_text or len(data) - 1)  # s3transfer's last: "N-"
            gets.append(f"{first}-{last}")
            self._headers(206, last - first + 1, {"Content-Range": f"bytes {first}-{last}/{len(data)}"})
            if first == 5 * MiB and not cut_done.is_set():
                cut_done.set()
                self.wfile.write(data[first:first + MiB])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data[first:last + 1])

        def log_message(self, *args: object) -> None: ...

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Serving)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        store = open_store("s3://bucket/x", Settings(home=tmp_path, s3=S3Settings(
            endpoint_url=endpoint, access_key_id="a", secret_access_key="b",
            multipart_threshold_mb=6, multipart_chunk_mb=5, max_concurrency=4)))
        progress = Counted()
        store.download_file("s3://bucket/data/x.bin", str(tmp_path / "x.bin"), progress=progress)
        assert (tmp_path / "x.bin").read_bytes() == data
        assert cut_done.is_set() and gets.count(f"{5 * MiB}-{10 * MiB - 1}") == 2
        assert progress.total == len(data)
    finally:
        server.shutdown()
        server.server_close()
