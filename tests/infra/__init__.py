"""The real-server test bed: MinIO, a Kubernetes control plane with fake GPU
nodes (kwok), and Podman serving the Docker API.

Binaries come from ``build-servers.sh`` (or the user's own, see ``binaries``);
the pytest fixtures that start them live in ``tests/conftest.py``.
"""
