"""moto's server plus what the sandbox needs and moto lacks: what `MotoServer` runs, as
`python -m carm.sandbox.moto_server -H HOST -p PORT` (the arguments of `moto_server`).

This is an emulator extension for a gap in moto, to be deleted once moto implements it: moto
5.2.5 and 5.2.6 have no S3 `?requestPayment` subresource. A PutBucketRequestPayment falls
through to moto's CreateBucket branch and stores nothing; a GetBucketRequestPayment answers a
ListObjects document without `Payer`. Here both operations behave as AWS's API reference says:

- the payer lives on moto's own bucket model (`FakeBucket.payer`, which moto keeps for AWS
  Config, default `BucketOwner`), so it belongs to the bucket's account as moto keeps buckets,
  and goes away with the bucket and with `/moto-api/reset`;
- Put takes a `RequestPaymentConfiguration` document whose `Payer` is `BucketOwner` or
  `Requester`; anything else is S3's `MalformedXML` (HTTP 400);
- Get answers `<RequestPaymentConfiguration xmlns=...><Payer>...</Payer></...>`;
- a bucket that does not exist is `NoSuchBucket`, as for moto's other subresources.

How it hooks in: moto's server hands every bucket-level S3 request (`bucket_dispatch`, and
`ambiguous_dispatch` for path-style URLs) to `S3Response.bucket_response`, which calls the
instance method `_bucket_response` and turns S3 errors raised there into S3's XML error
answers. `install()` wraps that one method: a GET or PUT on a bucket whose query names
`requestPayment` is answered here, after moto's own authentication and IAM check; every other
request goes to moto's method unchanged.

It runs inside the moto server process only. The controller never imports it (nothing outside
`carm.sandbox` imports `carm.sandbox`); `carm.sandbox.moto` only starts it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree

from moto.core.common_types import TYPE_RESPONSE
from moto.s3.exceptions import MalformedXML
from moto.s3.responses import S3Response
from moto.server import main as moto_main

PAYERS = ("BucketOwner", "Requester")
SUBRESOURCE = "requestPayment"
_S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"

# moto's `_bucket_response(self, request, full_url)`: a body, or (status, headers, body).
BucketHandler = Callable[[S3Response, Any, str], str | TYPE_RESPONSE]


def install() -> None:
    """Answer `?requestPayment` on buckets in this process's moto (idempotent)."""
    original: BucketHandler = S3Response._bucket_response
    if getattr(original, "answers_request_payment", False):
        return

    def bucket_response(response: S3Response, request: Any, full_url: str) -> str | TYPE_RESPONSE:
        bucket_name = response.parse_bucket_name_from_url(request, full_url)
        if (
            bucket_name
            and request.method in ("GET", "PUT")
            and SUBRESOURCE in response._get_querystring(request, full_url)
        ):
            return _request_payment(response, request.method, bucket_name)
        return original(response, request, full_url)

    bucket_response.answers_request_payment = True  # type: ignore[attr-defined]
    S3Response._bucket_response = bucket_response  # type: ignore[method-assign,assignment]


def _request_payment(response: S3Response, method: str, bucket_name: str) -> TYPE_RESPONSE:
    response.data["BucketName"] = bucket_name  # moto's IAM errors name the bucket from here
    # moto's IAM check finds the operation (Get/PutBucketRequestPayment) in botocore's model.
    response._authenticate_and_authorize_s3_action(bucket_name=bucket_name)
    bucket = response.backend.get_bucket(bucket_name)  # NoSuchBucket if it does not exist
    if method == "PUT":
        bucket.payer = _payer_from(response.body)
        return 200, {}, ""
    return 200, {}, _configuration(bucket.payer)


def _payer_from(body: bytes | str) -> str:
    """The payer of a RequestPaymentConfiguration document; MalformedXML unless it is valid."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise MalformedXML() from None
    payers = [child.text for child in root if _local_name(child.tag) == "Payer"]
    payer = payers[0] if len(payers) == 1 else None
    if _local_name(root.tag) != "RequestPaymentConfiguration" or payer not in PAYERS:
        raise MalformedXML()
    assert payer is not None
    return payer


def _local_name(tag: str) -> str:
    """`{namespace}Name` -> `Name`: clients send S3's namespace, or none."""
    return tag.rpartition("}")[2]


def _configuration(payer: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<RequestPaymentConfiguration xmlns="{_S3_XMLNS}">'
        f"<Payer>{payer}</Payer></RequestPaymentConfiguration>"
    )


def main(argv: list[str] | None = None) -> None:
    """Install the extension, then run moto's own server main with `moto_server`'s arguments."""
    install()
    moto_main(argv)


if __name__ == "__main__":
    main()
