"""trainforge.storage.lean.parse_list_page: ListObjectsV2 answers parsed
without botocore (the real MinIO answers are in tests/integration/test_storage_s3.py)."""

from __future__ import annotations

import pytest
from trainforge.storage.lean import parse_list_page

NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def listing(*contents: tuple[str, int], encoding: str | None = "url", token: str | None = None) -> bytes:
    items = "".join(f"<Contents><Key>{key}</Key><Size>{size}</Size><ETag>&quot;e{size}&quot;</ETag></Contents>"
                    for key, size in contents)
    more = f"<IsTruncated>true</IsTruncated><NextContinuationToken>{token}</NextContinuationToken>" if token else \
        "<IsTruncated>false</IsTruncated>"
    kind = f"<EncodingType>{encoding}</EncodingType>" if encoding else ""
    return f'<?xml version="1.0"?><ListBucketResult xmlns="{NS}"><Name>b</Name>{kind}{items}{more}</ListBucketResult>'.encode()


def test_keys_the_server_encoded_are_decoded_as_botocore_does() -> None:
    page = parse_list_page(listing(("with+space.bin", 1), ("plus%2Bsign.bin", 2), ("t%C3%A9%25.bin", 3)))
    assert page.objects == [("with space.bin", 1, '"e1"'), ("plus+sign.bin", 2, '"e2"'), ("té%.bin", 3, '"e3"')]
    assert page.next_token is None


def test_keys_of_a_server_that_did_not_encode_are_kept_as_they_are() -> None:
    page = parse_list_page(listing(("plus+sign%41.bin", 2), encoding=None, token="abc=="))
    assert page.objects == [("plus+sign%41.bin", 2, '"e2"')]
    assert page.next_token == "abc=="


@pytest.mark.parametrize("body", [
    b"<html>not s3</html>",
    b"not xml at all",
    f'<ListBucketResult xmlns="{NS}"><IsTruncated>true</IsTruncated></ListBucketResult>'.encode(),
    f'<ListBucketResult xmlns="{NS}"><Contents><Key>k</Key></Contents></ListBucketResult>'.encode(),
], ids=["another-document", "not-xml", "truncated-without-token", "object-without-size"])
def test_an_answer_that_is_not_a_whole_listing_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_list_page(body)
