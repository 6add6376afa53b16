"""Per-test names that are valid as Kubernetes namespaces and S3 buckets."""

from __future__ import annotations

import hashlib
import itertools
import re

_counter = itertools.count()


def dns_label(test_id: str, prefix: str = "t", max_len: int = 63) -> str:
    """A lowercase DNS-1123 label (also a valid bucket name) derived from ``test_id``.

    Readable part from the test name, then a hash of the full id and a counter,
    so two tests (or two uses in one test) never share a name in one session.
    """
    name = test_id.rsplit("::", 1)[-1]
    readable = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    suffix = hashlib.sha1(test_id.encode()).hexdigest()[:6] + f"{next(_counter):x}"
    room = max_len - len(prefix) - len(suffix) - 2
    readable = readable[:room].strip("-") or "x"
    return f"{prefix}-{readable}-{suffix}"
