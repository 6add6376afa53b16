"""The writes on the controller's hot path, as plain JSON over the official
client's connection pool and authentication.

The generated API methods of the ``kubernetes`` client validate every argument
with pydantic and project a dict body through its client models before sending
it: in a burst of new jobs that took half of the controller's CPU, on a machine
whose apiserver needs every cycle. Bodies here are API dicts (camelCase), sent
as they are; answers come back as dicts; errors are the client's own
``ApiException`` (``.status`` 404, 409 ...), so callers handle them as before.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from kubernetes import client

MERGE_PATCH = "application/merge-patch+json"


class Wire:
    def __init__(self, api: client.ApiClient):
        self.api = api

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                content_type: str = "application/json") -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        method, url, headers, _, _ = self.api.param_serialize(
            method=method, resource_path=path, header_params=headers, auth_settings=["BearerToken"])
        response = self.api.call_api(method, url, headers, body=body)
        response.read()
        if not 200 <= response.status <= 299:
            text = response.data.decode("utf-8", "replace") if response.data else None
            raise client.ApiException.from_response(http_resp=response, body=text, data=None)
        return json.loads(response.data) if response.data else {}

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """RFC 7386: a null removes a key."""
        return self.request("PATCH", path, body, MERGE_PATCH)


def core_path(namespace: str, plural: str, name: str | None = None) -> str:
    return _path("/api/v1", namespace, plural, name)


def group_path(group_version: str, namespace: str, plural: str, name: str | None = None) -> str:
    return _path(f"/apis/{group_version}", namespace, plural, name)


def _path(prefix: str, namespace: str, plural: str, name: str | None) -> str:
    path = f"{prefix}/namespaces/{quote(namespace, safe='')}/{plural}"
    return f"{path}/{quote(name, safe='')}" if name else path
