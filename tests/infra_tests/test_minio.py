"""The MinIO fixture is a real S3 endpoint with a fresh bucket per test."""

from __future__ import annotations

import urllib.request

from minio import Minio


def test_server_reports_healthy(minio):
    with urllib.request.urlopen(f"{minio.endpoint}/minio/health/live", timeout=5) as response:
        assert response.status == 200


def test_bucket_is_fresh_and_round_trips_an_object(minio_bucket):
    s3 = minio_bucket.s3_client()
    assert s3.list_objects_v2(Bucket=minio_bucket.name)["KeyCount"] == 0

    s3.put_object(Bucket=minio_bucket.name, Key="data/train.csv", Body=b"x,y\n1,2\n")

    # A second, independent client (the minio SDK) sees the same object.
    other = Minio(minio_bucket.endpoint.removeprefix("http://"), minio_bucket.access_key,
                  minio_bucket.secret_key, secure=False)
    response = other.get_object(minio_bucket.name, "data/train.csv")
    try:
        assert response.read() == b"x,y\n1,2\n"
    finally:
        response.close()
        response.release_conn()


def test_each_test_gets_its_own_bucket(minio, minio_bucket):
    import boto3

    s3 = boto3.client("s3", endpoint_url=minio.endpoint, aws_access_key_id=minio.access_key,
                      aws_secret_access_key=minio.secret_key, region_name=minio.region)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert minio_bucket.name in names
    # Named after the test, so a leftover bucket in the logs says whose it was.
    assert minio_bucket.name.startswith("t-test-each-test-gets-its-own-bucket-")


def test_mc_lists_what_boto3_wrote(minio, minio_bucket, mc_binary):
    import subprocess

    minio_bucket.s3_client().put_object(Bucket=minio_bucket.name, Key="a/b.txt", Body=b"hi")
    listing = subprocess.run(
        [str(mc_binary), "ls", "--recursive", f"test/{minio_bucket.name}"],
        env=minio.mc_env("test"), capture_output=True, text=True, timeout=60, check=True,
    )
    assert listing.stdout.strip().endswith("a/b.txt")
