"""scikit-learn's bundled handwritten digits (8x8 images, 1797 samples) as the
two channels the digits-pytorch example trains on. No download: the data ships
inside scikit-learn."""

from __future__ import annotations

import os
from pathlib import Path

FILE_NAME = "digits.npz"


def write_digits_dataset(
    out_dir: str | os.PathLike[str], *, seed: int = 0, validation_fraction: float = 0.2,
) -> dict[str, Path]:
    """Write ``<out_dir>/train/digits.npz`` and ``<out_dir>/validation/digits.npz``
    (arrays ``X``: float32 in [0, 1], shape (n, 64); ``y``: int64 labels 0-9),
    split with a fixed seed and stratified by label. Returns channel -> folder."""
    import numpy as np
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]
    from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be between 0 and 1, got {validation_fraction}")
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    X_train, X_val, y_train, y_val = train_test_split(
        X, y, test_size=validation_fraction, random_state=seed, stratify=y,
    )
    channels: dict[str, Path] = {}
    for channel, (features, labels) in {"train": (X_train, y_train), "validation": (X_val, y_val)}.items():
        folder = Path(out_dir) / channel
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / FILE_NAME, X=features, y=labels)
        channels[channel] = folder
    return channels


def upload_digits_dataset(prefix_uri: str) -> dict[str, str]:
    """Write the dataset and upload it under ``prefix_uri`` (``train/`` and
    ``validation/``); channel -> URI. The same bytes every time (fixed seed,
    fixed archive), so re-uploading leaves the data manifest unchanged."""
    import tempfile

    from ..storage import open_store
    from ..uris import parse_uri

    base = parse_uri(prefix_uri).as_prefix()
    store = open_store(str(base))
    store.ensure_bucket(str(base))
    uris = {}
    with tempfile.TemporaryDirectory(prefix="trainforge-digits-") as tmp:
        for channel, folder in write_digits_dataset(tmp).items():
            uris[channel] = str(base.join(channel).as_prefix())
            store.upload_dir(str(folder), uris[channel])
    return uris

