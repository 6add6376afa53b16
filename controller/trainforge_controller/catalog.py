"""Instance types from the catalog ConfigMap (key ``instances.yaml``: a list or a
name -> type mapping), falling back to ``trainforge.instances.DEFAULT_CATALOG``."""

from __future__ import annotations

from typing import Any

import yaml
from kubernetes import client
from pydantic import ValidationError

from trainforge.instances import DEFAULT_CATALOG, InstanceType

from .errors import ConfigError

CATALOG_KEY = "instances.yaml"


def parse_catalog(text: str) -> dict[str, InstanceType]:
    """Pure: the ConfigMap's text -> catalog; ConfigError naming the entry."""
    try:
        data = yaml.safe_load(text) or []
    except yaml.YAMLError as exc:
        raise ConfigError(f"instance catalog: not YAML: {exc}") from exc
    items: list[Any]
    if isinstance(data, dict):
        items = [{"name": k, **v} for k, v in data.items()]
    elif isinstance(data, list):
        items = data
    else:
        raise ConfigError("instance catalog: expected a list or a mapping of instance types")
    catalog: dict[str, InstanceType] = {}
    for i, item in enumerate(items):
        try:
            entry = InstanceType.model_validate(item)
        except ValidationError as exc:
            raise ConfigError(f"instance catalog entry {i}: {exc}") from exc
        catalog[entry.name] = entry
    return catalog


def load_catalog(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, InstanceType]:
    """The ConfigMap's catalog, or the built-in one when there is no ConfigMap."""
    try:
        cm = core.read_namespaced_config_map(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return dict(DEFAULT_CATALOG)
        raise
    text = (cm.data or {}).get(CATALOG_KEY)
    return parse_catalog(text) if text else dict(DEFAULT_CATALOG)
