"""The container_engine fixture: Podman's Docker API builds and runs images."""

from __future__ import annotations

from pathlib import Path

DOCKERFILE = """\
FROM {base}
RUN python3 -m venv /opt/venv && /opt/venv/bin/python -c "import ssl, venv" \\
    && echo built > /opt/built.txt
COPY upload.py /opt/upload.py
ENTRYPOINT ["/opt/venv/bin/python", "/opt/upload.py"]
"""

# Reads the mounted file and PUTs it to MinIO through a presigned URL: no
# credentials and no S3 library inside the image, only the network.
UPLOAD = """\
import sys, urllib.request
body = open("/input/data.txt", "rb").read() + open("/opt/built.txt", "rb").read()
request = urllib.request.Request(sys.argv[1], data=body, method="PUT")
with urllib.request.urlopen(request, timeout=30) as response:
    print("uploaded", len(body), "bytes, status", response.status)
"""


def test_docker_sdk_builds_and_runs_with_mount_and_host_network(
    container_engine, docker_client, minio_bucket, tmp_path: Path,
):
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE.format(base=container_engine.base_image))
    (context / "upload.py").write_text(UPLOAD)
    data = tmp_path / "input"
    data.mkdir()
    (data / "data.txt").write_text("hello from the host\n")
    tag = f"localhost/trainforge-test/{minio_bucket.name}:1"
    url = minio_bucket.s3_client().generate_presigned_url(
        "put_object", Params={"Bucket": minio_bucket.name, "Key": "out/data.txt"}, ExpiresIn=600)

    image, _ = docker_client.images.build(path=str(context), tag=tag, rm=True)
    try:
        assert tag in image.tags
        output = docker_client.containers.run(
            tag, [url], remove=True, network_mode="host",
            volumes={str(data): {"bind": "/input", "mode": "ro"}},
        )
    finally:
        docker_client.images.remove(tag, force=True)

    assert b"status 200" in output
    got = minio_bucket.s3_client().get_object(Bucket=minio_bucket.name, Key="out/data.txt")
    assert got["Body"].read() == b"hello from the host\nbuilt\n"


def test_base_image_has_python_venv_and_pip(container_engine, docker_client):
    output = docker_client.containers.run(
        container_engine.base_image,
        ["python3", "-c", "import ensurepip, ssl, sys, venv; print(sys.version_info[:2])"],
        remove=True,
    )
    assert output.strip().startswith(b"(3,")
    assert docker_client.containers.run(
        container_engine.base_image, ["python3", "-m", "pip", "--version"], remove=True,
    ).startswith(b"pip ")
