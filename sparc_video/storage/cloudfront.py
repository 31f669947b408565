"""Expiring CloudFront URLs: canned-policy signatures with the distribution's trusted key.

With CLOUDFRONT_KEY_PAIR_ID and a private key (CLOUDFRONT_PRIVATE_KEY or _FILE), download URLs
on CLOUDFRONT_DOMAIN carry Expires/Signature/Key-Pair-Id and stop working at their expiry, like
S3 presigned URLs. Without them the URL is plain and the distribution must enforce access.
"""

from __future__ import annotations

import datetime
from urllib.parse import quote

from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class CloudFrontLinks:
    def __init__(self, domain: str, key_pair_id: str | None, private_key_pem: str | None) -> None:
        self._base = "https://" + domain.removeprefix("https://").rstrip("/")
        self._signer: CloudFrontSigner | None = None
        if key_pair_id and private_key_pem:
            key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError("CLOUDFRONT_PRIVATE_KEY must be an RSA private key (PEM)")

            def sign(message: bytes) -> bytes:
                # CloudFront's canned policies are signed with RSA-SHA1, as AWS specifies.
                return key.sign(message, padding.PKCS1v15(), hashes.SHA1())

            self._signer = CloudFrontSigner(key_pair_id, sign)

    @property
    def signed(self) -> bool:
        return self._signer is not None

    def url(self, key: str, ttl_s: int) -> str:
        url = f"{self._base}/{quote(key, safe='/')}"
        if self._signer is None:
            return url
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=ttl_s)
        return str(self._signer.generate_presigned_url(url, date_less_than=expires))
