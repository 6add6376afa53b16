"""Attacks on unpacking model archives (``trainforge.archives``, used by
``download_model`` and ``Job.download_model``).

Each hostile tarball is crafted here, unpacked into ``sandbox/target`` next to
a ``sandbox/outside`` folder holding a secret, and must be refused with an
``UnsafeArchive`` naming the archive and the member, with nothing at all
changed outside the target (every path under the sandbox but the target is
compared, with its type, mode, size and link target, before and after)."""

from __future__ import annotations

import io
import os
import shutil
import stat
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from trainforge.archives import Limits, extract_tar
from trainforge.errors import StorageError, UnsafeArchive
from trainforge.staging import download_model
from trainforge.storage import open_store

Member = Callable[[tarfile.TarFile], None]


# -- crafting --------------------------------------------------------------------
def file(name: str, data: bytes = b"data", mode: int = 0o644) -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), mode
        tar.addfile(info, io.BytesIO(data))
    return add


def special(name: str, kind: bytes, linkname: str = "", mode: int = 0o755) -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.mode = kind, linkname, mode
        tar.addfile(info)
    return add


def folder(name: str, mode: int = 0o755) -> Member:
    return special(name, tarfile.DIRTYPE, mode=mode)


def symlink(name: str, target: str) -> Member:
    return special(name, tarfile.SYMTYPE, target)


def hardlink(name: str, target: str) -> Member:
    return special(name, tarfile.LNKTYPE, target)


def write_tar(path: Path, members: list[Member], compression: str = "gz") -> Path:
    with tarfile.open(path, f"w:{compression}" if compression else "w", format=tarfile.GNU_FORMAT) as tar:
        for add in members:
            add(tar)
    return path


def symlink_chain(escape_to: str) -> list[Member]:
    """The CVE-2025-4517 shape: 16 nested 247-character folders, each reached
    through a one-letter symlink, a deep link climbing back up, and a link
    through it whose resolved path is too long for ``os.path.realpath`` to
    finish, so the stdlib data filter judges it inside."""
    long = "d" * 247
    steps = "abcdefghijklmnop"
    members: list[Member] = []
    path = ""
    for step in steps:
        members += [folder(os.path.join(path, long)), symlink(os.path.join(path, step), long)]
        path = os.path.join(path, long)
    climb = os.path.join(*steps, "l" * 254)
    members += [symlink(climb, "../" * len(steps)), symlink("escape", f"{climb}/{escape_to}"),
                file("escape/pwned", b"owned")]
    return members


# -- the sandbox -----------------------------------------------------------------
class Sandbox:
    def __init__(self, root: Path):
        self.root = root
        self.target = root / "target"
        self.outside = root / "outside"
        self.outside.mkdir(parents=True)
        (self.outside / "secret").write_text("host secret")
        os.chmod(self.outside, 0o700)
        self.target.mkdir()

    def snapshot(self) -> dict[str, tuple[Any, ...]]:
        """Everything under the sandbox but the target, never following links."""
        seen: dict[str, tuple[Any, ...]] = {}
        for folder_, dirs, files in os.walk(self.root):
            if Path(folder_) == self.target:
                dirs[:] = []
                continue
            for name in dirs + files:
                path = os.path.join(folder_, name)
                info = os.lstat(path)
                link = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
                seen[path] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_size, link,
                              Path(path).read_bytes() if stat.S_ISREG(info.st_mode) else None)
        return seen


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path / "sandbox")
    before = box.snapshot()
    yield box
    assert box.snapshot() == before, "something outside the target changed"


def refused(box: Sandbox, members: list[Member], match: str, limits: Limits = Limits(),
            compression: str = "gz") -> UnsafeArchive:
    archive = write_tar(box.root.parent / "hostile.tar.gz", members, compression)
    with pytest.raises(UnsafeArchive, match=match) as caught:
        extract_tar(archive, box.target, limits=limits)
    assert str(archive) in str(caught.value)
    assert list(box.target.iterdir()) == [], "a refused archive wrote into the target"
    return caught.value


# -- attacks -----------------------------------------------------------------------
def test_absolute_path(sandbox: Sandbox) -> None:
    refused(sandbox, [file("ok.txt"), file(str(sandbox.outside / "pwned"))],
            f"member '{sandbox.outside / 'pwned'}' has an absolute path")


@pytest.mark.parametrize("name", ["../outside/pwned", "a/../../outside/pwned", "./../outside/pwned"])
def test_dot_dot(sandbox: Sandbox, name: str) -> None:
    refused(sandbox, [file("ok.txt"), file(name)], "has a '..' component")


def test_symlink_leaving_the_target(sandbox: Sandbox) -> None:
    refused(sandbox, [symlink("up", "../outside")], "'up' is a symlink to '../outside', which leaves")
    refused(sandbox, [symlink("up", "../outside"), file("up/pwned")], "'up/pwned' lies below 'up'")


def test_absolute_symlink(sandbox: Sandbox) -> None:
    refused(sandbox, [symlink("abs", str(sandbox.outside))], "is a symlink to the absolute path")


def test_file_written_through_an_inside_symlink_is_refused(sandbox: Sandbox) -> None:
    """Never followed while unpacking, even when the link stays inside."""
    refused(sandbox, [folder("real"), symlink("alias", "real"), file("alias/x")],
            "'alias/x' lies below 'alias', which the archive makes a symlink")


def test_symlink_chain_cve_2025_4517(sandbox: Sandbox) -> None:
    refused(sandbox, symlink_chain("../outside"), "lies below 'a', which the archive makes a symlink")


def test_symlink_chain_without_members_below_links(sandbox: Sandbox) -> None:
    """Each link looks harmless on its own; only resolved through the other one
    does ``x`` leave: ``p/q/l`` is the target itself, so ``p/q/l/..`` is its parent."""
    refused(sandbox, [folder("p/q"), symlink("p/q/l", "../.."), symlink("x", "p/q/l/../outside")],
            "'x' is a symlink to 'p/q/l/../outside', which leaves")


def test_symlink_chain_in_reverse_order(sandbox: Sandbox) -> None:
    """The link that makes ``x`` escape comes after it in the archive."""
    refused(sandbox, [folder("p/q"), symlink("x", "p/q/l/../outside"), symlink("p/q/l", "../..")],
            "'x' is a symlink to 'p/q/l/../outside', which leaves")


def test_symlink_loop(sandbox: Sandbox) -> None:
    refused(sandbox, [symlink("a", "b/x"), symlink("b", "a/y")], "which leaves")


@pytest.mark.parametrize("source", ["../outside/secret", "/etc/passwd", "later.txt", "link/secret"])
def test_hardlink_not_to_an_earlier_file(sandbox: Sandbox, source: str) -> None:
    members = [symlink("link", "."), hardlink("h", source), file("later.txt")]
    refused(sandbox, members, "'h' is a hardlink to")


@pytest.mark.parametrize(("kind", "what"), [(tarfile.CHRTYPE, "a character device"),
                                            (tarfile.BLKTYPE, "a block device"), (tarfile.FIFOTYPE, "a fifo")])
def test_device_nodes_and_fifos(sandbox: Sandbox, kind: bytes, what: str) -> None:
    refused(sandbox, [file("ok.txt"), special("dev", kind)], f"'dev' is {what}")


def test_member_count_cap(sandbox: Sandbox) -> None:
    refused(sandbox, [file(f"f{i}") for i in range(11)], "'f10' is past the cap of 10 members",
            Limits(max_members=10))


def test_size_cap_on_a_gzip_bomb(sandbox: Sandbox) -> None:
    """8 MiB of zeros is a few KiB compressed; refused before any byte is written."""
    archive = write_tar(sandbox.root.parent / "bomb.tar.gz", [file("zeros", bytes(8 * 1024 * 1024))])
    assert archive.stat().st_size < 64 * 1024
    with pytest.raises(UnsafeArchive, match="'zeros' takes the archive past the cap of 1048576 bytes"):
        extract_tar(archive, sandbox.target, limits=Limits(max_bytes=1024 * 1024))
    assert list(sandbox.target.iterdir()) == []


def test_declared_size_beyond_the_default_cap(sandbox: Sandbox) -> None:
    """A header claiming 1 TiB (the data need not be there): refused from the header alone."""
    archive = sandbox.root.parent / "huge.tar"
    info = tarfile.TarInfo("huge")
    info.size = 1024**4
    archive.write_bytes(info.tobuf(tarfile.GNU_FORMAT) + bytes(1024))
    with pytest.raises(UnsafeArchive, match="'huge' takes the archive past the cap"):
        extract_tar(archive, sandbox.target)


def test_more_than_the_disk_has_free(sandbox: Sandbox) -> None:
    archive = sandbox.root.parent / "huge.tar"
    info = tarfile.TarInfo("huge")
    info.size = shutil.disk_usage(sandbox.target).free + 1024**3
    with open(archive, "wb") as f:  # a sparse file: the zeros take no disk
        f.write(info.tobuf(tarfile.GNU_FORMAT))
        f.truncate(512 + -(-info.size // 512) * 512 + 1024)
    with pytest.raises(UnsafeArchive, match=f"cannot unpack {archive} into .*: it needs {info.size} bytes, "):
        extract_tar(archive, sandbox.target, limits=Limits(max_bytes=1024**6))
    assert list(sandbox.target.iterdir()) == []


def test_huge_pax_header(sandbox: Sandbox) -> None:
    """tarfile reads a pax header whole into memory: its size is checked first."""
    archive = sandbox.root.parent / "pax.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("x")
        info.pax_headers = {"comment": "c" * 4096}
        tar.addfile(info)
    with pytest.raises(UnsafeArchive, match="metadata header, over the cap of 1024"):
        extract_tar(archive, sandbox.target, limits=Limits(max_header_bytes=1024))


def test_special_bits_and_modes_are_dropped(sandbox: Sandbox) -> None:
    archive = write_tar(sandbox.root.parent / "modes.tar.gz", [
        folder("d", 0o1777), file("d/suid", b"#!/bin/sh\n", 0o6777), file("ro", b"x", 0o000)])
    extract_tar(archive, sandbox.target)
    assert stat.S_IMODE((sandbox.target / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((sandbox.target / "d" / "suid").stat().st_mode) == 0o755
    assert stat.S_IMODE((sandbox.target / "ro").stat().st_mode) == 0o600


def test_a_symlink_already_in_the_target_is_not_followed(sandbox: Sandbox) -> None:
    (sandbox.target / "planted").symlink_to(sandbox.outside)
    archive = write_tar(sandbox.root.parent / "a.tar.gz", [file("planted/pwned")])
    with pytest.raises(UnsafeArchive, match="'planted/pwned' would be written through 'planted'"):
        extract_tar(archive, sandbox.target)


def test_a_chain_across_two_archives(sandbox: Sandbox) -> None:
    """The first archive's link is harmless alone (``pre`` is the target); the
    second one's climbs out through it."""
    extract_tar(write_tar(sandbox.root.parent / "1.tar.gz", [symlink("pre", ".")]), sandbox.target)
    archive = write_tar(sandbox.root.parent / "2.tar.gz", [symlink("x", "pre/../outside")])
    with pytest.raises(UnsafeArchive, match="'x' is a symlink to 'pre/../outside', which leaves"):
        extract_tar(archive, sandbox.target)
    assert not (sandbox.target / "x").is_symlink()


def test_an_existing_file_symlink_is_replaced_not_followed(sandbox: Sandbox) -> None:
    (sandbox.target / "model.pt").symlink_to(sandbox.outside / "secret")
    extract_tar(write_tar(sandbox.root.parent / "m.tar.gz", [file("model.pt", b"weights")]), sandbox.target)
    assert not (sandbox.target / "model.pt").is_symlink()
    assert (sandbox.target / "model.pt").read_bytes() == b"weights"


@pytest.mark.parametrize("data", [b"not a tar at all", b"\x1f\x8b\x08\x00garbage"])
def test_corrupt_archive(sandbox: Sandbox, data: bytes) -> None:
    archive = sandbox.root.parent / "corrupt.tar.gz"
    archive.write_bytes(data)
    with pytest.raises(StorageError, match=f"cannot read the archive {archive}"):
        extract_tar(archive, sandbox.target)


# -- the stdlib is not enough on this Python -----------------------------------------
def _stdlib_data_filter_is_patched() -> bool:
    fixed = {(3, 10): 18, (3, 11): 13, (3, 12): 11, (3, 13): 4}
    v = sys.version_info
    return v[:2] not in fixed or v.micro >= fixed[v[:2]]


@pytest.mark.skipif(_stdlib_data_filter_is_patched(), reason="this Python's tarfile data filter is patched")
def test_the_chain_really_escapes_the_stdlib_data_filter_here(tmp_path: Path) -> None:
    """Proof that the crafted chain is a live attack on this interpreter, which
    is why trainforge does not rely on ``extractall(filter="data")``."""
    box = Sandbox(tmp_path / "box")
    archive = write_tar(tmp_path / "chain.tar", symlink_chain("../outside"), compression="")
    with tarfile.open(archive) as tar:
        tar.extractall(box.target, filter="data")
    assert (box.outside / "pwned").read_bytes() == b"owned"


# -- what must keep working ------------------------------------------------------------
def benign(path: Path) -> Path:
    return write_tar(path, [
        folder("."), folder("ckpt"), file("ckpt/model.pt", b"weights", 0o640), file("config.json", b"{}"),
        symlink("latest", "ckpt/model.pt"), folder("sub"), symlink("sub/up", "../config.json"),
        symlink("sub/here", "."), symlink("dangling", "not/yet/there"), hardlink("copy.pt", "ckpt/model.pt"),
        folder("ckpt"),  # a folder twice is harmless (appended archives)
    ])


def test_benign_archive_with_internal_links(sandbox: Sandbox) -> None:
    entries = extract_tar(benign(sandbox.root.parent / "ok.tar.gz"), sandbox.target)
    t = sandbox.target
    assert (t / "latest").read_bytes() == b"weights" and os.readlink(t / "latest") == "ckpt/model.pt"
    assert (t / "sub" / "up").read_bytes() == b"{}"
    assert (t / "copy.pt").stat().st_ino == (t / "ckpt" / "model.pt").stat().st_ino
    assert os.readlink(t / "dangling") == "not/yet/there"
    assert stat.S_IMODE((t / "ckpt" / "model.pt").stat().st_mode) == 0o640
    assert len(entries) == 10


# -- through download_model, on real stores -------------------------------------------------
@pytest.fixture
def local_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for variable in ("TRAINFORGE_CONFIG", "TRAINFORGE_S3_ENDPOINT_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _download_attack(sandbox: Sandbox, base_uri: str) -> None:
    hostile = write_tar(sandbox.root.parent / "model.tar.gz", symlink_chain("../outside"))
    uri = base_uri + "job/output/model.tar.gz"
    open_store(uri).write_bytes(uri, hostile.read_bytes())
    with pytest.raises(UnsafeArchive, match=f"refusing to unpack {uri}: member 'a/"):
        download_model(uri, sandbox.target)
    assert list(sandbox.target.iterdir()) == []

    good = base_uri + "good/output/model.tar.gz"
    open_store(good).write_bytes(good, benign(sandbox.root.parent / "good.tar.gz").read_bytes())
    model = download_model(good, sandbox.target / "model")
    assert (model / "latest").read_bytes() == b"weights"


def test_download_model_on_the_local_store(sandbox: Sandbox, local_home: Path) -> None:
    _download_attack(sandbox, "local://models/")


@pytest.mark.minio
def test_download_model_on_minio(sandbox: Sandbox, minio_bucket: Any, local_home: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in minio_bucket.env().items():
        monkeypatch.setenv(key, value)
    _download_attack(sandbox, minio_bucket.uri())


HOSTILE_TRAINER = '''
import os
model = os.environ["SM_MODEL_DIR"]
os.makedirs(os.path.join(model, "p", "q"), exist_ok=True)
with open(os.path.join(model, "model.txt"), "w") as f:
    f.write("a model\\n")
os.symlink("../..", os.path.join(model, "p", "q", "l"))           # the target folder itself: harmless alone
os.symlink("p/q/l/../outside", os.path.join(model, "x"))         # through it: the target's parent
os.symlink(os.environ["OUTSIDE"], os.path.join(model, "home"))   # and a plain absolute link
'''


def test_job_download_model_of_a_hostile_trainer(sandbox: Sandbox, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A trainer plants links in its model folder; the packer keeps them as
    links (today); the SDK's ``Job.download_model`` refuses the archive."""
    import trainforge
    from trainforge.spec import Phase

    from tests.integration.local_jobs import stop_leftovers

    for variable in ("TRAINFORGE_BACKEND", "TRAINFORGE_CONFIG", "TRAINFORGE_S3_ENDPOINT_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    trainer = tmp_path / "hostile"
    (trainer / "trainer").mkdir(parents=True)
    (trainer / "trainer" / "start.py").write_text(HOSTILE_TRAINER)
    try:
        job = trainforge.submit({"metadata": {"name": "links"},
                                 "spec": {"image": str(trainer), "env": {"OUTSIDE": str(sandbox.outside)}}})
        job.wait(timeout=180, raise_on_failure=False)
        if job.model_uri is None:  # a packer that refuses such links is fine too
            assert job.phase is Phase.FAILED
            return
        try:
            job.download_model(sandbox.target)
        except UnsafeArchive as exc:
            assert f"refusing to unpack {job.model_uri}: member '" in str(exc)
            assert list(sandbox.target.iterdir()) == []
        # whatever did land inside leads nowhere outside
        root = os.path.realpath(sandbox.target)
        for folder_, dirs, files in os.walk(sandbox.target):
            for name in dirs + files:
                assert os.path.realpath(os.path.join(folder_, name)).startswith(root + os.sep), name
    finally:
        stop_leftovers()
