"""The Xet CAS's metadata routes: the read token and the reconstruction of a file.

``GET`` the hub's read-token route (the hub's credentials, only to the hub's origin) for the
CAS URL and a read token; ``GET {cas}/v2/reconstructions/{xet hash}`` (``/v1`` when the CAS
has no v2) with ``Range`` for one batch of file bytes. Every failure is
:class:`XetUnavailable`: the file then goes on over the plain path (:mod:`.xet`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from ..redirects import same_origin
from ..transport import TransportError
from ..xet import Reconstruction, ReconstructionError, parse_reconstruction
from .context import Context
from .jobs import XetSource
from .worker import Body, FetchError

__all__ = ["XetUnavailable", "get_json", "read_token", "reconstruction"]


class XetUnavailable(Exception):
    """The Xet path cannot finish this file; ``keep``: the chunks on disk are verified."""

    def __init__(self, message: str, keep: bool = True) -> None:
        super().__init__(message)
        self.keep = keep


def get_json(
    ctx: Context, url: str, headers: Mapping[str, str]
) -> tuple[object, Mapping[str, str]]:
    """The JSON body (at most 64 MiB) and headers of a 200 answer to ``GET url``."""
    try:
        resp = ctx.transport.get(url, headers, ctx.timeouts)
    except TransportError as exc:
        raise XetUnavailable(f"{url}: {exc}") from None
    try:
        chunks = []
        buf = memoryview(bytearray(64 * 1024))
        reader = Body(resp, ctx.timeouts, 64 << 20)
        while n := reader.readinto(buf):
            chunks.append(bytes(buf[:n]))
        status, hdrs = resp.status, resp.headers
    except FetchError as exc:
        raise XetUnavailable(f"{url}: {exc}") from None
    finally:
        resp.close()
    if status != 200:
        raise XetUnavailable(f"{url}: HTTP {status}")
    try:
        return json.loads(b"".join(chunks) or b"null"), hdrs
    except ValueError:
        raise XetUnavailable(f"{url}: not JSON") from None


def read_token(ctx: Context, src: XetSource) -> tuple[str, str]:
    """(CAS URL, read token) from the hub's token route."""
    url = src.token_url
    headers = dict(src.headers) if same_origin(url, url) else {}
    _, hdrs = get_json(ctx, url, headers)
    cas, token = hdrs.get("X-Xet-Cas-Url"), hdrs.get("X-Xet-Access-Token")
    if not cas or not token:
        raise XetUnavailable("the token route gave no CAS URL or token")
    return cas.rstrip("/"), token


def reconstruction(
    ctx: Context, cas: str, token: str, file_hash: str, first: int, last: int
) -> Reconstruction:
    """The reconstruction of file bytes ``[first, last]``."""
    headers = {"Authorization": f"Bearer {token}", "Range": f"bytes={first}-{last}"}
    for version in ("v2", "v1"):
        url = f"{cas}/{version}/reconstructions/{file_hash}"
        try:
            data, _ = get_json(ctx, url, headers)
        except XetUnavailable as exc:
            if version == "v2" and ("HTTP 404" in str(exc) or "HTTP 501" in str(exc)):
                continue
            raise
        try:
            return parse_reconstruction(data)
        except (ReconstructionError, KeyError, TypeError, ValueError) as exc:
            raise XetUnavailable(f"bad reconstruction: {exc}") from None
    raise XetUnavailable("no reconstruction API")
