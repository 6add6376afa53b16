"""Moving a job's data between the object store and its /opt/ml tree.

Shared by the local backends (the supervisor) and the cluster's stager
containers: stage in channels, restore and sync checkpoints, pack and upload
the model, output data, metrics and logs. Artifacts are single objects written
atomically, so a reader never sees half of one, and the model is uploaded only
for a job that succeeded.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from .archives import extract_tar
from .artifacts import ArtifactURIs, channel_uri  # noqa: F401  (re-exported: the layout lives there)
from .contract import Layout, HostInfo, input_data_config, resource_config
from .errors import StorageError
from .spec import InputMode, TrainingJob
from .spec.models import Distribution
from .storage import NullProgress, TransferProgress, open_store
from .uris import parse_uri


def write_config_files(job: TrainingJob, layout: Layout, host: HostInfo) -> None:
    """The three files of /opt/ml/input/config, and the empty tree around them."""
    for directory in layout.directories():
        os.makedirs(directory, exist_ok=True)
    files = {
        layout.hyperparameters_file: job.spec.hyperparameters,
        layout.resource_config_file: resource_config(host),
        layout.input_data_config_file: input_data_config(job.spec.inputs),
    }
    for path, content in files.items():
        Path(path).write_text(json.dumps(content, indent=2, sort_keys=True), encoding="utf-8")


def stage_in(job: TrainingJob, layout: Layout, host: HostInfo,
             progress: TransferProgress | None = None) -> None:
    """Every input channel into /opt/ml/input/data/<channel>/.

    FullyReplicated: each host gets everything; ShardedByS3Key: host i of n gets
    keys[i::n]. FastFile on a local store links the data instead of copying.
    """
    for item in job.spec.inputs:
        target = layout.channel_dir(item.channel)
        shutil.rmtree(target, ignore_errors=True)
        store = open_store(item.uri)
        source = store.local_path(item.uri)
        fully = item.distribution == Distribution.FULLY_REPLICATED
        if item.mode == InputMode.FAST_FILE and source and fully and os.path.isdir(source):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(source, target, target_is_directory=True)
            continue
        shard = None if fully else (host.rank, len(host.hosts))
        try:
            store.download_prefix(item.uri, target, progress=progress or NullProgress(), shard=shard)
        except StorageError as exc:  # same class (unreachable, not found, ...), naming the channel
            raise type(exc)(f"input channel {item.channel!r}: {exc}") from exc


def restore_checkpoints(job: TrainingJob, layout: Layout) -> int:
    """Download the checkpoint URI into the checkpoint dir; number of files."""
    if job.spec.checkpoints is None:
        return 0
    store = open_store(job.spec.checkpoints.uri)
    uri = parse_uri(job.spec.checkpoints.uri).as_prefix()
    if not store.list(uri):
        return 0
    return store.download_prefix(uri, layout.checkpoint_dir).files


def sync_checkpoints(job: TrainingJob, layout: Layout) -> int:
    """Upload the checkpoint dir to the checkpoint URI (new and changed files)."""
    if job.spec.checkpoints is None or not os.path.isdir(layout.checkpoint_dir):
        return 0
    if not any(Path(layout.checkpoint_dir).rglob("*")):
        return 0
    uri = parse_uri(job.spec.checkpoints.uri).as_prefix()
    return open_store(uri).upload_dir(layout.checkpoint_dir, uri).files


def _pack(directory: str, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        for entry in sorted(os.listdir(directory)):
            tar.add(os.path.join(directory, entry), arcname=entry)


def upload_tree_as_tar(directory: str, uri: str, progress: TransferProgress | None = None,
                       scratch: str | None = None) -> bool:
    """Pack ``directory`` into one tar.gz object at ``uri``; False if it is empty.
    The archive is made in ``scratch`` (default: the system temp dir)."""
    if not os.path.isdir(directory) or not os.listdir(directory):
        return False
    with tempfile.TemporaryDirectory(prefix="trainforge-pack-", dir=scratch) as tmp:
        archive = Path(tmp) / os.path.basename(uri)
        _pack(directory, archive)
        open_store(uri).upload_file(str(archive), uri, progress=progress)
    return True


def stage_out_model(layout: Layout, artifacts: ArtifactURIs, progress: TransferProgress | None = None,
                    scratch: str | None = None) -> tuple[str | None, str | None]:
    """model.tar.gz (always, even if empty, as SageMaker does) and output.tar.gz,
    packed in ``scratch`` (a folder its caller sweeps; default: the system temp dir)."""
    os.makedirs(layout.model_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="trainforge-pack-", dir=scratch) as tmp:
        archive = Path(tmp) / "model.tar.gz"
        _pack(layout.model_dir, archive)
        open_store(artifacts.model).upload_file(str(archive), artifacts.model, progress=progress)
    packed = upload_tree_as_tar(layout.output_data_dir, artifacts.output, progress, scratch)
    output = artifacts.output if packed else None
    return artifacts.model, output


def download_model(model_uri: str, target: str | os.PathLike[str]) -> Path:
    """Fetch model.tar.gz and unpack it into ``target`` as untrusted input
    (``trainforge.archives``: nothing lands outside ``target``)."""
    target = Path(target)
    with tempfile.TemporaryDirectory(prefix="trainforge-model-") as tmp:
        archive = Path(tmp) / "model.tar.gz"
        open_store(model_uri).download_file(model_uri, str(archive))
        extract_tar(archive, target, source=model_uri)
    return target

