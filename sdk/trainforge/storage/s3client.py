"""boto3 clients for S3-compatible stores, and the mapping of botocore errors
into trainforge's hierarchy. This module, ``s3.py``, ``lean.py`` and ``sts.py``
are the only places in trainforge that import boto3/botocore.

Endpoint and credentials: ``Settings.s3`` when set, otherwise boto3's own
chain (``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ``~/.aws/config``, ...). Any
endpoint other than AWS's gets path-style addressing (MinIO and friends).
Short connect timeouts and few retries make an unreachable endpoint fail in
seconds rather than minutes.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    FlexibleChecksumError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from s3transfer.exceptions import RetriesExceededError, S3DownloadFailedError

from .. import __version__
from ..config import S3Settings
from ..errors import (
    ConfigError,
    IntegrityError,
    ObjectNotFound,
    StorageError,
    StorageUnreachable,
)
from ..uris import redact_userinfo

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60
MAX_ATTEMPTS = 3

# Environment that changes what boto3 resolves: part of the client cache key.
_ENV_KEYS = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
    "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
)
_clients: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()

_AUTH_CODES = {
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
    "TokenRefreshRequired", "InvalidSecurity", "AuthorizationHeaderMalformed",
}
_DENIED_CODES = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccountProblem"}
_MISSING_KEY_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
_CHECKSUM_CODES = {
    "BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch", "XAmzContentSHA256Mismatch",
    "InvalidChecksum",
}
CREDENTIALS_HINT = ("check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
                    "or s3.access_key_id/s3.secret_access_key in the trainforge config")


def _is_aws(endpoint_url: str | None) -> bool:
    return bool(endpoint_url) and ".amazonaws.com" in str(endpoint_url)


def _config(s3: S3Settings, path_style: bool) -> Config:
    return Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        # our file pool + s3transfer's part pool, each max_concurrency wide
        max_pool_connections=2 * s3.max_concurrency + 4,
        tcp_keepalive=True,
        user_agent_extra=f"trainforge/{__version__}",
        s3={"addressing_style": "path"} if path_style else None,
    )


def make_client(s3: S3Settings) -> Any:
    """A new S3 client for these settings (see the module docstring)."""
    try:
        session = boto3.session.Session(
            profile_name=s3.profile,
            aws_access_key_id=s3.access_key_id,
            aws_secret_access_key=s3.secret_access_key,
            aws_session_token=s3.session_token,
            region_name=s3.region,
        )
        client = session.client("s3", endpoint_url=s3.endpoint_url, config=_config(s3, False))
        if not _is_aws(client.meta.endpoint_url):
            client = session.client("s3", endpoint_url=s3.endpoint_url, config=_config(s3, True))
    except ProfileNotFound as exc:
        raise ConfigError(f"S3 profile {s3.profile or os.environ.get('AWS_PROFILE')!r} "
                          f"not found in the AWS config files: {exc}") from exc
    except (BotoCoreError, ValueError) as exc:
        raise ConfigError(redact_userinfo(f"cannot configure the S3 client "
                          f"(endpoint {s3.endpoint_url or 'from the AWS settings'}): {exc}")) from exc
    return client


def _credentials_file_version() -> tuple[int, int] | None:
    """Which version of ``AWS_SHARED_CREDENTIALS_FILE`` is in place: on Kubernetes
    a mounted Secret is swapped for a new file when the controller refreshes a
    job's short-lived credentials, and the next client must read the new one."""
    path = os.environ.get("AWS_SHARED_CREDENTIALS_FILE")
    if not path:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns)


def forget_clients() -> None:
    """Drop every cached client: in a forked process they would share the
    parent's pooled connections (and the lock could be the parent's, held)."""
    global _lock
    _lock = threading.Lock()
    _clients.clear()


def client_for(s3: S3Settings) -> Any:
    """The cached client for these settings and the current AWS_* environment
    (boto3 clients are thread-safe; making one costs tens of milliseconds)."""
    key = (s3.model_dump_json(), tuple(os.environ.get(k) for k in _ENV_KEYS), _credentials_file_version())
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = make_client(s3)
        return client


def error_code(exc: ClientError) -> tuple[str, int | None]:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, status


def from_s3(exc: ClientError) -> bool:
    """Did an S3 server send this error? Proxies and web servers (a wrong
    endpoint URL, the MinIO console port) answer with a bare HTTP status:
    no S3 error code and none of the headers S3 implementations send."""
    code, status = error_code(exc)
    if code and code != str(status) and code not in ("NotFound", "Forbidden"):
        return True
    meta = exc.response.get("ResponseMetadata", {})
    headers = meta.get("HTTPHeaders", {}) or {}
    return bool(meta.get("RequestId")) or any(
        h.lower().startswith(("x-amz-", "x-minio-", "x-goog-", "x-ms-")) for h in headers)


def is_not_found(exc: ClientError) -> bool:
    """A 404 from S3 itself (not from something else at the endpoint URL)."""
    return error_code(exc)[1] == 404 and from_s3(exc)


def map_error(exc: BaseException, uri: str, endpoint: str, action: str) -> StorageError:
    """One botocore/s3transfer error -> the StorageError a user can act on,
    naming the URI (and the endpoint where it helps, never its credentials:
    botocore's own messages repeat the endpoint URL as configured)."""
    error = _map_error(exc, uri, endpoint, action)
    error.args = (redact_userinfo(str(error)),)
    return error


def _map_error(exc: BaseException, uri: str, endpoint: str, action: str) -> StorageError:
    if isinstance(exc, RetriesExceededError) and isinstance(exc.last_exception, BaseException):
        exc = exc.last_exception
    if isinstance(exc, ClientError):
        code, status = error_code(exc)
        message = exc.response.get("Error", {}).get("Message") or code
        bucket = uri.split("/")[2] if uri.startswith("s3://") else uri
        if not from_s3(exc):
            return StorageUnreachable(
                f"{endpoint} does not answer like an S3 endpoint (HTTP {status} without an S3 "
                f"error while trying to {action} {uri}); check the endpoint URL")
        if code == "NoSuchBucket":
            return ObjectNotFound(f"bucket {bucket!r} does not exist at {endpoint} ({uri})")
        if code in _MISSING_KEY_CODES or status == 404:
            return ObjectNotFound(f"no object at {uri}")
        if code in _AUTH_CODES:
            return StorageUnreachable(
                f"S3 endpoint {endpoint} rejected the credentials while trying to {action} "
                f"{uri} ({code}: {message}); {CREDENTIALS_HINT}")
        if code in _DENIED_CODES or status == 403:
            return StorageUnreachable(
                f"access denied to bucket {bucket!r} at {endpoint} while trying to {action} "
                f"{uri} ({code}); {CREDENTIALS_HINT}, and the bucket policy")
        if code in _CHECKSUM_CODES:
            return IntegrityError(
                f"S3 endpoint {endpoint} rejected the checksum while trying to {action} {uri} "
                f"({code}): the data changed while it was being sent or was corrupted in transit")
        return StorageError(f"cannot {action} {uri} at {endpoint}: {code or status}: {message}")
    if isinstance(exc, FlexibleChecksumError):
        return IntegrityError(f"{uri}: the bytes received do not match the stored checksum ({exc})")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StorageUnreachable(f"no usable S3 credentials to {action} {uri} ({exc}); {CREDENTIALS_HINT}")
    if isinstance(exc, S3DownloadFailedError):  # s3transfer's word for a 412 on its pinned ETag
        return StorageError(f"{uri} was replaced while it was being downloaded ({action} it again): "
                            "nothing was kept of either version")
    if isinstance(exc, ReadTimeoutError):
        return StorageUnreachable(f"S3 endpoint {endpoint} timed out while trying to {action} {uri}: {exc}")
    if isinstance(exc, (EndpointConnectionError, BotoConnectionError, ConnectionClosedError)):
        return StorageUnreachable(f"cannot reach S3 endpoint {endpoint} to {action} {uri}: {exc}")
    return StorageError(f"cannot {action} {uri} at {endpoint}: {type(exc).__name__}: {exc}")


# The exceptions map_error understands; everything else propagates as it is.
MAPPED = (ClientError, BotoCoreError, RetriesExceededError, S3DownloadFailedError)
