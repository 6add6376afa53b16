"""Moving a job's data between the object store and its /opt/ml tree.

Shared by the local backends (the supervisor) and the cluster's stager
containers: stage in channels, restore and sync checkpoints, pack and upload
the model, output data, metrics and logs. Artifacts are single objects written
atomically, so a reader never sees half of one, and the model is uploaded only
for a job that succeeded.

The /opt/ml tree is the trainer's: every read, walk, pack and write below its
root goes through :mod:`trainforge.untrusted`, which never follows a link.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

from . import untrusted
from .archives import extract_tar
from .artifacts import ArtifactURIs, channel_uri  # noqa: F401  (re-exported: the layout lives there)
from .contract import Layout, HostInfo, input_data_config, resource_config
from .errors import StorageError
from .spec import InputMode, TrainingJob
from .spec.models import Distribution
from .storage import NullProgress, TransferProgress, open_store
from .uris import parse_uri

if TYPE_CHECKING:
    from .config import Settings


def _rel(layout: Layout, path: str) -> str:
    """``path`` (one of the layout's) relative to its root, for untrusted.*."""
    return os.path.relpath(path, layout.root)


def write_config_files(job: TrainingJob, layout: Layout, host: HostInfo) -> None:
    """The three files of /opt/ml/input/config, and the empty tree around them.
    Written without following links (on a retry the trainer had the tree)."""
    os.makedirs(layout.root, exist_ok=True)
    for directory in layout.directories():
        untrusted.make_dirs(layout.root, _rel(layout, directory))
    files = {
        layout.hyperparameters_file: job.spec.hyperparameters,
        layout.resource_config_file: resource_config(host),
        layout.input_data_config_file: input_data_config(job.spec.inputs),
    }
    for path, content in files.items():
        text = json.dumps(content, indent=2, sort_keys=True)
        untrusted.write_file(layout.root, _rel(layout, path), text.encode("utf-8"))


def fastfile_folders(job: TrainingJob) -> dict[str, str]:
    """FastFile channels whose data is a folder on this machine (the embedded
    store, ``file://``) and every host gets all of: channel -> that folder.
    A backend that can show it read-only (a container's read-only bind mount)
    serves it in place instead of copying it."""
    folders: dict[str, str] = {}
    for item in job.spec.inputs:
        if item.mode != InputMode.FAST_FILE or item.distribution != Distribution.FULLY_REPLICATED:
            continue
        source = open_store(item.uri).local_path(item.uri)
        if source and os.path.isdir(source):
            folders[item.channel] = os.path.realpath(source)
    return folders


def stage_in(job: TrainingJob, layout: Layout, host: HostInfo,
             progress: TransferProgress | None = None, in_place: Collection[str] = ()) -> None:
    """Every input channel into /opt/ml/input/data/<channel>/.

    FullyReplicated: each host gets everything; ShardedByS3Key: host i of n gets
    keys[i::n]. Channels named in ``in_place`` (see :func:`fastfile_folders`)
    get an empty folder, the mount point the backend shows the data at; every
    other channel is copied (a local store's files are reflinked where the
    filesystem can: a link would let the trainer change the dataset).
    """
    os.makedirs(layout.root, exist_ok=True)
    for item in job.spec.inputs:
        target = layout.channel_dir(item.channel)
        if item.channel in in_place:
            untrusted.reset_dir(layout.root, _rel(layout, target))
            continue
        untrusted.remove(layout.root, _rel(layout, target))
        store = open_store(item.uri)
        fully = item.distribution == Distribution.FULLY_REPLICATED
        shard = None if fully else (host.rank, len(host.hosts))
        try:
            store.download_prefix(item.uri, target, progress=progress or NullProgress(), shard=shard)
        except StorageError as exc:  # same class (unreachable, not found, ...), naming the channel
            raise type(exc)(f"input channel {item.channel!r}: {exc}") from exc


def restore_checkpoints(job: TrainingJob, layout: Layout) -> int:
    """Download the checkpoint URI into the checkpoint dir; number of files.
    The trainer may have planted links there: they are removed first, so the
    download writes only into real folders."""
    if job.spec.checkpoints is None:
        return 0
    os.makedirs(layout.root, exist_ok=True)
    untrusted.scrub(layout.root, _rel(layout, layout.checkpoint_dir))
    store = open_store(job.spec.checkpoints.uri)
    uri = parse_uri(job.spec.checkpoints.uri).as_prefix()
    if not store.list(uri):
        return 0
    return store.download_prefix(uri, layout.checkpoint_dir).files


def sync_checkpoints(job: TrainingJob, layout: Layout, scratch: str | None = None) -> int:
    """Upload the checkpoint dir to the checkpoint URI. What is uploaded is a
    snapshot of its regular files, taken without following links into a
    folder the trainer cannot write (in ``scratch``, a folder on the same
    filesystem makes it hard links), so a planted link publishes nothing."""
    if job.spec.checkpoints is None:
        return 0
    rel = _rel(layout, layout.checkpoint_dir)
    if not untrusted.has_files(layout.root, rel):
        return 0
    uri = parse_uri(job.spec.checkpoints.uri).as_prefix()
    with tempfile.TemporaryDirectory(prefix=".checkpoints-", dir=scratch) as snapshot:
        if not untrusted.copy_out(layout.root, rel, snapshot):
            return 0
        return open_store(uri).upload_dir(snapshot, uri).files


def sync_tensorboard(layout: Layout, artifacts: ArtifactURIs, scratch: str | None = None) -> int:
    """Upload the trainer's TensorBoard folder (``TRAINFORGE_TENSORBOARD_DIR``)
    to ``<artifacts>/tensorboard/``, as sync_checkpoints does: a snapshot of its
    regular files, links never followed."""
    rel = _rel(layout, layout.tensorboard_dir)
    if not untrusted.has_files(layout.root, rel):
        return 0
    uri = parse_uri(artifacts.tensorboard).as_prefix()
    with tempfile.TemporaryDirectory(prefix=".tensorboard-", dir=scratch) as snapshot:
        if not untrusted.copy_out(layout.root, rel, snapshot):
            return 0
        return open_store(uri).upload_dir(snapshot, uri).files


def _pack(root: str, rel: str, archive: Path) -> None:
    """The directories and regular files below ``root/rel`` as a tar.gz; a link
    or special file the trainer left there is skipped, never followed."""
    with tarfile.open(archive, "w:gz") as tar:
        for entry in untrusted.walk(root, rel):
            info = tarfile.TarInfo(entry.rel)
            info.mode = stat.S_IMODE(entry.stat.st_mode) & 0o755
            info.mtime = int(entry.stat.st_mtime)
            if entry.is_dir:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            handle = entry.open()
            if handle is None:
                continue
            with handle:
                info.size = os.fstat(handle.fileno()).st_size
                tar.addfile(info, handle)


def _tree_as_tar(root: str, rel: str, uri: str, progress: TransferProgress | None, always: bool,
                 scratch: str | None = None) -> bool:
    """Pack ``root/rel`` in ``scratch`` (default: the system temp dir) and upload it."""
    if not always and not any(True for _ in untrusted.walk(root, rel)):
        return False
    with tempfile.TemporaryDirectory(prefix="trainforge-pack-", dir=scratch) as tmp:
        archive = Path(tmp) / os.path.basename(uri)
        _pack(root, rel, archive)
        open_store(uri).upload_file(str(archive), uri, progress=progress)
    return True


def upload_tree_as_tar(directory: str, uri: str, progress: TransferProgress | None = None,
                       scratch: str | None = None) -> bool:
    """Pack ``directory`` into one tar.gz object at ``uri``; False if it is empty.
    Links below ``directory`` are skipped (``directory`` itself is trusted)."""
    directory = os.path.abspath(directory)
    return _tree_as_tar(os.path.dirname(directory), os.path.basename(directory), uri, progress, False, scratch)


def stage_out_model(layout: Layout, artifacts: ArtifactURIs, progress: TransferProgress | None = None,
                    scratch: str | None = None) -> tuple[str | None, str | None]:
    """model.tar.gz (always, even if empty, as SageMaker does) and output.tar.gz,
    packed in ``scratch`` (a folder its caller sweeps; default: the system temp
    dir). Only the directories and regular files the trainer left are packed."""
    model = _rel(layout, layout.model_dir)
    os.makedirs(layout.root, exist_ok=True)
    untrusted.make_dirs(layout.root, model)
    _tree_as_tar(layout.root, model, artifacts.model, progress, True, scratch)
    has_output = _tree_as_tar(layout.root, _rel(layout, layout.output_data_dir), artifacts.output, progress,
                              False, scratch)
    return artifacts.model, artifacts.output if has_output else None


def download_model(model_uri: str, target: str | os.PathLike[str], settings: Settings | None = None) -> Path:
    """Fetch model.tar.gz and unpack it into ``target`` as untrusted input
    (``trainforge.archives``: nothing lands outside ``target``); ``settings`` are
    the backend's (its store endpoint and credentials), else the user's."""
    target = Path(target)
    with tempfile.TemporaryDirectory(prefix="trainforge-model-") as tmp:
        archive = Path(tmp) / "model.tar.gz"
        open_store(model_uri, settings).download_file(model_uri, str(archive))
        extract_tar(archive, target, source=model_uri)
    return target

