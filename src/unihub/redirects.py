"""What a redirect is and how far one is followed: the one rule every request loop uses.

unihub follows redirects by hand everywhere (metadata, probes, file bodies, the cluster's part
fetches), so that credentials are decided again at every hop (a hub token never reaches a CDN
on another origin: see :func:`unihub.session.same_origin`). Each loop sends its request its
own way (the httpx2 client, the http.client data transport); what counts as a redirect, where
it leads, how many hops are allowed and what "the same origin" means (whether a hop may carry
a source's credentials) is decided here only.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

__all__ = [
    "MAX_REDIRECTS",
    "STATUSES",
    "hops",
    "method_after",
    "next_url",
    "origin",
    "same_origin",
]

MAX_REDIRECTS = 10
STATUSES = frozenset({301, 302, 303, 307, 308})


def hops() -> range:
    """One pass per request of a chain: the first and at most :data:`MAX_REDIRECTS` more."""
    return range(MAX_REDIRECTS + 1)


def next_url(url: str, status: int, location: str | None) -> str | None:
    """The next hop after an answer ``status`` (with ``Location``) to ``url``; None when the
    answer is not a redirect to follow (then it is the answer)."""
    if status not in STATUSES or not location:
        return None
    return urljoin(url, location)


def method_after(status: int, method: str) -> str:
    """The method of the next hop: a 303 turns anything but HEAD into GET (RFC 9110 15.4.4)."""
    return "GET" if status == 303 and method != "HEAD" else method


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port), the default port filled in: what "same origin" compares."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return (scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme))


def same_origin(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` share scheme, host and port: a hop may carry the credentials of
    the other only then."""
    return origin(a) == origin(b)
