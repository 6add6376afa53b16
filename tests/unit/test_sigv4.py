"""trainforge.storage.sigv4 against AWS's published example and botocore's signer."""

from __future__ import annotations

import datetime
from unittest import mock

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from trainforge.storage.sigv4 import EMPTY_SHA256, sign

# AWS's example "GET Object" (Signature Version 4, header-based auth, S3 API reference).
ACCESS, SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_the_aws_documentation_example_signs_the_same() -> None:
    headers = sign("GET", "/test.txt", "", {"Host": "examplebucket.s3.amazonaws.com", "Range": "bytes=0-9"},
                   access_key=ACCESS, secret_key=SECRET, token=None, region="us-east-1",
                   payload_sha256=EMPTY_SHA256, date="20130524T000000Z")
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


def test_the_same_signature_as_botocore_with_a_token_a_query_and_an_encoded_key() -> None:
    url, query = "http://127.0.0.1:9000/bucket/with%20space/t%C3%A9%2B.bin", "list-type=2&prefix=a%20b"
    request = AWSRequest(method="GET", url=f"{url}?{query}", headers={"If-Match": '"etag"'})
    now = datetime.datetime(2026, 12, 3, 15, 4, 5)
    with mock.patch("botocore.auth.datetime.datetime") as clock:
        clock.utcnow.return_value = now
        clock.now.return_value = now
        clock.strptime = datetime.datetime.strptime
        S3SigV4Auth(Credentials(ACCESS, SECRET, "session-token"), "s3", "eu-west-1").add_auth(request)
    ours = sign("GET", "/bucket/with%20space/t%C3%A9%2B.bin", query,
                {"host": "127.0.0.1:9000", "If-Match": '"etag"'}, access_key=ACCESS, secret_key=SECRET,
                token="session-token", region="eu-west-1", payload_sha256=request.headers["X-Amz-Content-SHA256"],
                date="20261203T150405Z")
    assert request.headers["X-Amz-Date"] == "20261203T150405Z"
    assert ours["authorization"] == request.headers["Authorization"]
