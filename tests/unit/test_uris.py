"""Storage URIs: parsing, checking, joining. Pure."""

from __future__ import annotations

import pytest
from trainforge.uris import StorageURI, parse_uri


@pytest.mark.parametrize(("text", "scheme", "bucket", "key"), [
    ("s3://datasets/mnist/train/", "s3", "datasets", "mnist/train/"),
    ("s3://datasets", "s3", "datasets", ""),
    ("s3://datasets/", "s3", "datasets", ""),
    ("S3://my.bucket-1/a b/c", "s3", "my.bucket-1", "a b/c"),
    ("local://trainforge-data/job/train/", "local", "trainforge-data", "job/train/"),
    ("file:///tmp/data/", "file", "", "tmp/data/"),
    ("file://localhost/tmp/x.npz", "file", "", "tmp/x.npz"),
])
def test_parse(text: str, scheme: str, bucket: str, key: str) -> None:
    assert parse_uri(text) == StorageURI(scheme, bucket, key)


@pytest.mark.parametrize("text", [
    "s3://datasets/mnist/train/", "s3://datasets/", "local://trainforge-data/x", "file:///tmp/data/",
])
def test_str_round_trips(text: str) -> None:
    assert str(parse_uri(text)) == text


@pytest.mark.parametrize(("text", "words"), [
    ("", "expected a storage URI"),
    ("/tmp/data", "expected an s3://, local:// or file:// URI"),
    ("http://bucket/key", "expected an s3://, local:// or file:// URI"),
    ("gs://bucket/key", "expected an s3://, local:// or file:// URI"),
    ("s3://Bucket/key", "not a valid bucket name"),
    ("s3://ab/key", "not a valid bucket name"),
    ("s3://-bucket/key", "not a valid bucket name"),
    ("s3://bucket..x/key", "not a valid bucket name"),
    ("s3://bucket/a/../b", "'.' or '..'"),
    ("s3://bucket/./b", "'.' or '..'"),
    ("s3://bucket/key?versionId=1", "query or fragment"),
    ("file://relative/path", "must be absolute"),
    ("file:///", "absolute path below /"),
])
def test_invalid(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace(".", r"\.").replace("(", r"\(")):
        parse_uri(text)


def test_join_and_prefix() -> None:
    root = parse_uri("s3://models/mnist")
    assert str(root.as_prefix()) == "s3://models/mnist/"
    assert str(root.as_prefix().as_prefix()) == "s3://models/mnist/"
    assert str(root.join("job-1", "/output/", "model.tar.gz")) == "s3://models/mnist/job-1/output/model.tar.gz"
    assert str(parse_uri("s3://models").join("a", "", "b")) == "s3://models/a/b"
    assert str(parse_uri("s3://models").as_prefix()) == "s3://models/"
    assert str(parse_uri("file:///tmp/out").join("job")) == "file:///tmp/out/job"
