"""The registry's pure rules: references, names that become keys, CI lineage,
data fingerprints, version numbering and alias history."""

from __future__ import annotations

import pytest
from trainforge.errors import InvalidModelRef
from trainforge.registry.documents import (
    ALIAS_HISTORY, Layout, ModelRef, alias_document, channel_manifest, ci_from_env, next_number, numbers_in,
    parse_ref,
)
from trainforge.storage.base import ObjectInfo
from trainforge.uris import parse_uri


@pytest.mark.parametrize("text, expected", [
    ("digits", ModelRef("digits")),
    ("digits@3", ModelRef("digits", version=3)),
    ("digits@production", ModelRef("digits", alias="production")),
    ("my_model-2@candidate", ModelRef("my_model-2", alias="candidate")),
])
def test_references(text: str, expected: ModelRef) -> None:
    assert parse_ref(text) == expected
    assert str(parse_ref(text)) == text


@pytest.mark.parametrize("text", [
    "", "@3", "../digits", "digits/../../x", "Digits", "digits@0", "digits@-1", "digits@Prod", "digits@../x",
    "digits@", "digits@1@2", "x" * 64, "-digits", "digits-", "di gits", "digits@9999999999",
])
def test_bad_references_are_refused(text: str) -> None:
    with pytest.raises(InvalidModelRef):
        parse_ref(text)


def test_layout_keys() -> None:
    layout = Layout(parse_uri("s3://models/registry"), "team-a", "digits")
    assert str(layout.document(3)) == "s3://models/registry/team-a/digits/versions/3/version.json"
    assert str(layout.alias("production")) == "s3://models/registry/team-a/digits/aliases/production.json"
    with pytest.raises(InvalidModelRef):
        Layout(parse_uri("s3://models/"), "../team", "digits").model_prefix  # noqa: B018


@pytest.mark.parametrize("environ, expected", [
    ({}, None),
    ({"GITHUB_SHA": "abc", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "o/r",
      "GITHUB_RUN_ID": "7", "GITHUB_REF_NAME": "main"},
     {"system": "github-actions", "commit": "abc", "runUrl": "https://github.com/o/r/actions/runs/7", "ref": "main"}),
    ({"GITHUB_SHA": "abc"}, {"system": "github-actions", "commit": "abc"}),
    ({"CI_COMMIT_SHA": "def", "CI_PIPELINE_URL": "https://gitlab.example/o/r/-/pipelines/9"},
     {"system": "gitlab-ci", "commit": "def", "runUrl": "https://gitlab.example/o/r/-/pipelines/9"}),
])
def test_ci_lineage(environ: dict[str, str], expected: dict[str, str] | None) -> None:
    assert ci_from_env(environ) == expected


def test_channel_manifest_is_order_free_and_content_sensitive() -> None:
    a = [ObjectInfo("s3://b/d/1", "d/1", 3, "e1"), ObjectInfo("s3://b/d/2", "d/2", 4, "e2")]
    first = channel_manifest("s3://b/d/", a)
    assert first == channel_manifest("s3://b/d/", list(reversed(a)))
    assert (first["objects"], first["bytes"]) == (2, 7)
    changed = [a[0], ObjectInfo("s3://b/d/2", "d/2", 4, "e3")]
    assert channel_manifest("s3://b/d/", changed)["sha256"] != first["sha256"]


def test_version_numbers_ignore_foreign_keys() -> None:
    layout = Layout(parse_uri("s3://mmm/r/"), "default", "digits")
    base = "r/default/digits/versions/"
    keys = [f"{base}1/version.json", f"{base}2/claim.json", f"{base}10/version.json", f"{base}01/version.json",
            f"{base}x/version.json", f"{base}3/model.tar.gz", "r/default/digits/aliases/production.json"]
    objects = [ObjectInfo(f"s3://mmm/{k}", k, 1) for k in keys]
    assert numbers_in(layout, objects, "version.json") == [1, 10]
    assert next_number(numbers_in(layout, objects, "claim.json") + numbers_in(layout, objects, "version.json")) == 11


def test_alias_history_is_bounded_newest_first() -> None:
    document = None
    for version in range(1, ALIAS_HISTORY + 6):
        document = alias_document(name="digits", alias="production", version=version, previous=document,
                                  moved_at="t", moved_by=None, ci=None)
    assert document is not None and document["version"] == ALIAS_HISTORY + 5
    assert len(document["history"]) == ALIAS_HISTORY
    assert [h["version"] for h in document["history"][:2]] == [ALIAS_HISTORY + 5, ALIAS_HISTORY + 4]
    assert document["history"][0]["from"] == ALIAS_HISTORY + 4
