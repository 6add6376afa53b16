"""Short-lived, scoped credentials from an S3 store's STS (MinIO's AssumeRole,
or AWS STS): the only other place besides ``s3client.py`` and ``s3.py`` that
talks to boto3.

    creds = assume_role(parent, session_policy(read=[...], write=[...]), 3600, "tf-team-a-mnist")

The result can do at most what both the parent credentials and the session
policy allow. A store without STS (or that refuses the call) raises
``StsUnavailable``; callers fall back to the parent credentials and say so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..config import S3Settings
from ..errors import StorageError
from .policy import policy_text

DEFAULT_ROLE_ARN = "arn:aws:iam::000000000000:role/trainforge-job"  # MinIO ignores it; AWS needs a real one
MIN_DURATION_SECONDS = 900  # MinIO's and AWS's lower bound
_POLICY_CODES = {"InvalidParameterValue", "MalformedPolicyDocument", "PackedPolicyTooLarge"}  # this policy only


class StsUnavailable(StorageError):
    """The store cannot mint scoped credentials (no STS, refused, policy too
    large). ``store_wide``: it would answer the same for any policy (no STS
    there, unreachable, parent credentials refused), so callers may stop asking
    for a while."""

    def __init__(self, message: str, store_wide: bool = True):
        super().__init__(message)
        self.store_wide = store_wide


@dataclass(frozen=True)
class TemporaryCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime  # aware, UTC

    def settings(self, parent: S3Settings) -> S3Settings:
        """The parent's endpoint and region with these keys."""
        return parent.model_copy(update={
            "access_key_id": self.access_key_id, "secret_access_key": self.secret_access_key,
            "session_token": self.session_token, "profile": None})

    def credentials_file(self) -> str:
        """An AWS shared-credentials file (``AWS_SHARED_CREDENTIALS_FILE``): a
        file, unlike environment variables, can be replaced while a pod runs."""
        return ("[default]\n"
                f"aws_access_key_id = {self.access_key_id}\n"
                f"aws_secret_access_key = {self.secret_access_key}\n"
                f"aws_session_token = {self.session_token}\n")


def session_name(*parts: str) -> str:
    """A RoleSessionName (2-64 of ``[\\w+=,.@-]``) from its parts, for the store's audit log."""
    name = re.sub(r"[^\w+=,.@-]", "-", "-".join(parts))[:64]
    return name if len(name) >= 2 else f"tf{name}"


def assume_role(parent: S3Settings, policy: dict[str, Any], duration_seconds: int, name: str,
                role_arn: str = DEFAULT_ROLE_ARN) -> TemporaryCredentials:
    """Credentials for ``duration_seconds`` (at least 900) limited by ``policy``."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from .s3client import CONNECT_TIMEOUT_S, READ_TIMEOUT_S

    endpoint = parent.endpoint_url
    try:
        session = boto3.session.Session(
            aws_access_key_id=parent.access_key_id, aws_secret_access_key=parent.secret_access_key,
            aws_session_token=parent.session_token, profile_name=parent.profile,
            region_name=parent.region or "us-east-1")
        sts = session.client("sts", endpoint_url=endpoint, config=Config(
            connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
            retries={"max_attempts": 2, "mode": "standard"}))
        answer = sts.assume_role(RoleArn=role_arn, RoleSessionName=name, Policy=policy_text(policy),
                                 DurationSeconds=max(MIN_DURATION_SECONDS, int(duration_seconds)))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise StsUnavailable(f"the store at {endpoint or 'AWS'} refused AssumeRole for {name}: "
                             f"{error.get('Code')}: {error.get('Message')}",
                             store_wide=error.get("Code") not in _POLICY_CODES) from exc
    except (BotoCoreError, ValueError) as exc:
        raise StsUnavailable(f"cannot reach the STS of {endpoint or 'AWS'} for {name}: {exc}") from exc
    creds = answer["Credentials"]
    expiration = creds["Expiration"]
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=timezone.utc)
    return TemporaryCredentials(creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"],
                                expiration.astimezone(timezone.utc))
