"""Offline status checks of tokenmint tokens with the IETF Token Status List
(draft-ietf-oauth-status-list, JWT form), as a relying party does them (draft section 8.3).

A tokenmint token carries ``"status": {"status_list": {"idx": N, "uri": "..."}}``. The list at
``uri`` is a signed Status List Token (``typ: statuslist+jwt``) whose ``status_list.lst`` packs one
2-bit status per token (0 VALID, 1 INVALID, 2 SUSPENDED), DEFLATE-compressed in the ZLIB wrapper
and base64url-encoded. This module needs only the standard library and PyJWT:

    status = token_status(raw_token, keys, issuer="tokenmint")   # after verifying raw_token itself
    if status != VALID: refuse the token

Verify the token's own signature and expiry first (the draft's step 0): this module reads its
``status`` claim without checking it. Cache a fetched list for at most its ``ttl`` seconds.
"""

from __future__ import annotations

import base64
import urllib.request
import zlib
from typing import Callable, Mapping

import jwt  # PyJWT

VALID, INVALID, SUSPENDED = 0, 1, 2
MEDIA_TYPE = "application/statuslist+jwt"
# A small lst can inflate a thousandfold: refuse lists (and responses) beyond these.
MAX_LIST_BYTES = 1 << 24
MAX_RESPONSE_BYTES = 1 << 22


class StatusListError(Exception):
    """The list could not be fetched or read: the token must be refused."""


def decode_lst(lst: str, max_bytes: int = MAX_LIST_BYTES) -> bytes:
    """The packed bytes of a ``status_list.lst`` value (ZLIB required, raw DEFLATE refused)."""
    try:
        raw = base64.urlsafe_b64decode(lst + "=" * (-len(lst) % 4))
        inflater = zlib.decompressobj()  # wbits=15: the RFC 1950 ZLIB wrapper
        data = inflater.decompress(raw, max_bytes)
    except (ValueError, zlib.error) as err:
        raise StatusListError(f"status list lst does not decode: {err}") from err
    if inflater.unconsumed_tail or not inflater.eof:
        raise StatusListError("status list is larger than allowed, or cut short")
    return data


def status_at(bits: int, data: bytes, idx: int) -> int:
    """Entry ``idx`` of a list of ``bits``-bit entries; out of range is an error (refuse the token)."""
    if type(bits) is not int or bits not in (1, 2, 4, 8):
        raise StatusListError(f"status list bits must be 1, 2, 4 or 8, not {bits!r}")
    if type(idx) is not int or not 0 <= idx < len(data) * 8 // bits:
        raise StatusListError(f"index {idx!r} is outside the status list")
    per_byte = 8 // bits
    return (data[idx // per_byte] >> ((idx % per_byte) * bits)) & ((1 << bits) - 1)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects (the draft allows them) to http(s) only."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not newurl.startswith(("https://", "http://")):
            raise StatusListError(f"status list redirected to {newurl!r}, not http(s)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def fetch_status_list(uri: str, timeout: float = 10.0) -> str:
    """GET the Status List Token at ``uri`` (only http and https; the body size is capped)."""
    if not uri.startswith(("https://", "http://")):
        raise StatusListError(f"status list uri {uri!r} is not http(s)")
    request = urllib.request.Request(uri, headers={"Accept": MEDIA_TYPE})
    try:
        with _OPENER.open(request, timeout=timeout) as resp:
            content_type = resp.headers.get("Content-Type", "")
            if resp.status != 200 or content_type.split(";")[0].strip() != MEDIA_TYPE:
                raise StatusListError(f"GET {uri}: HTTP {resp.status}, content-type {content_type!r}")
            body = resp.read(MAX_RESPONSE_BYTES + 1)
        if len(body) > MAX_RESPONSE_BYTES:
            raise StatusListError(f"GET {uri}: the status list is larger than {MAX_RESPONSE_BYTES} bytes")
        return body.decode("ascii")
    except (OSError, UnicodeDecodeError) as err:  # urllib.error.URLError and HTTPError are OSErrors
        raise StatusListError(f"GET {uri}: {err}") from err


def token_status(
    raw_token: str,
    keys: Mapping[str, jwt.PyJWK],
    *,
    issuer: str,
    fetch: Callable[[str], str] = fetch_status_list,
    leeway: float = 0,
) -> int:
    """The status of an already verified token, read from the list its ``status`` claim names.

    ``keys`` maps ``kid`` to the JWKS keys the token was verified with; the list must be signed by
    one of them, carry ``typ: statuslist+jwt``, the issuer, ``iat``, an unexpired ``exp`` and
    ``sub`` equal to the token's list uri. Raises StatusListError when anything does not hold.
    """
    try:
        claims = jwt.decode(raw_token, options={"verify_signature": False})
    except jwt.PyJWTError as err:
        raise StatusListError(f"the token does not decode: {err}") from err
    status = claims.get("status")
    reference = status.get("status_list") if isinstance(status, dict) else None
    idx, uri = (reference.get("idx"), reference.get("uri")) if isinstance(reference, dict) else (None, None)
    if type(idx) is not int or not isinstance(uri, str):
        raise StatusListError(f"the token has no status.status_list {{idx, uri}}: {status!r}")
    list_token = fetch(uri)
    try:
        header = jwt.get_unverified_header(list_token)
    except jwt.PyJWTError as err:
        raise StatusListError(f"the status list token does not decode: {err}") from err
    if str(header.get("typ", "")).lower().removeprefix("application/") != "statuslist+jwt":
        raise StatusListError(f"the list's typ is {header.get('typ')!r}, not statuslist+jwt")
    key = keys.get(header.get("kid"))
    if key is None:
        raise StatusListError(f"the list is signed with unknown kid {header.get('kid')!r}")
    try:
        payload = jwt.decode(
            list_token, key.key, algorithms=[key.algorithm_name], issuer=issuer, leeway=leeway,
            options={"require": ["iat", "exp", "sub", "status_list"], "verify_aud": False},
        )
    except jwt.PyJWTError as err:
        raise StatusListError(f"the status list token does not verify: {err}") from err
    if payload["sub"] != uri:
        raise StatusListError(f"the list's sub {payload['sub']!r} is not the token's uri {uri!r}")
    inner = payload["status_list"]
    if not isinstance(inner, dict) or not isinstance(inner.get("lst"), str):
        raise StatusListError("the list's status_list claim has no lst")
    return status_at(inner.get("bits"), decode_lst(inner["lst"]), idx)
