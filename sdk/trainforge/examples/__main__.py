"""``python -m trainforge.examples PREFIX_URI``: upload the digits dataset
(``train/`` and ``validation/``) under PREFIX_URI, e.g. s3://bucket/digits/."""

from __future__ import annotations

import sys

from .digits import upload_digits_dataset


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m trainforge.examples PREFIX_URI", file=sys.stderr)
        return 2
    for name, uri in upload_digits_dataset(argv[0]).items():
        print(f"{name}: {uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
