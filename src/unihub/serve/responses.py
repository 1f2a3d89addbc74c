"""File answers of the server: a body from an async iterator, sent with flow control, stopped
when the client leaves, and a release hook that always runs (the blob's pin).

Written instead of Starlette's ``FileResponse`` / ``StreamingResponse`` because the server
needs three things they do not give together: one ``Range`` rule for warm and cold answers
(:mod:`.ranges`; Starlette's file response has its own, with multipart bodies), a hook that
runs whatever way the answer ends (the pin that keeps the blob from eviction while it is
read), and a small bounded read size per reader (memory per slow client: one chunk plus the
transport's high-water mark, since uvicorn's ``send`` waits while the socket is full).
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path

import anyio
import anyio.lowlevel
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .blobs import Aborted
from .protocol import SENDFILE

__all__ = ["MAX_BODY", "SENT", "BodyResponse", "file_chunks", "small_body"]

SENT = "unihub.sent"  # an ASGI message of ours: body bytes the server sent by itself

READ_SIZE = 256 * 1024  # bytes read (and held) per reader at a time
MAX_BODY = 1 << 20  # the largest request body taken (paths-info: 10,000 paths fit in 0.5 MB)


async def small_body(request: Request, limit: int = MAX_BODY) -> bytes | None:
    """The request's body, read no further than ``limit`` bytes (None past it, declared or
    sent): a client cannot make the server hold a body of any size. A client that left gets
    an empty body (what is answered then is never read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    except ClientDisconnect:
        return b""
    return b"".join(chunks)


async def file_chunks(path: Path, start: int, end: int) -> AsyncGenerator[bytes, None]:
    """Bytes ``[start, end)`` of a complete (verified, pinned) file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = start
        while pos < end:
            data = os.pread(fd, min(READ_SIZE, end - pos), pos)
            if not data:
                raise Aborted(f"short read at {pos} of {path.name}")
            pos += len(data)
            yield data
    finally:
        os.close(fd)


class BodyResponse(Response):
    """Status, headers (with ``Content-Length``) and a body iterator; ``release`` runs once the
    answer is over (sent, cut by the client, or failed)."""

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        body: AsyncGenerator[bytes, None] | None,
        release: Callable[[], Awaitable[None]] | None = None,
        file: tuple[Path, int, int] | None = None,
    ) -> None:
        super().__init__(None, status, headers)
        self.body_iter = body
        self.file = file  # (path, start, end) of a complete blob: zero-copy where offered
        self.release = release
        self.aborted: Aborted | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            if self.body_iter is None or scope.get("method") == "HEAD":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            sendfile = scope.get("extensions", {}).get(SENDFILE)
            if self.file is not None and sendfile is not None:
                await self._zero_copy(sendfile, send)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pump, send, tg.cancel_scope)
                await _until_disconnect(receive)
                tg.cancel_scope.cancel()
            if self.aborted is not None:
                raise self.aborted
        finally:
            if self.body_iter is not None:
                await self.body_iter.aclose()
            if self.release is not None:
                await self.release()

    async def _zero_copy(self, sendfile: Callable[..., Awaitable[int]], send: Send) -> None:
        """The blob through ``sendfile``; what it did not send (nothing, if the socket was not
        to be had) goes the usual way from where it stopped."""
        assert self.file is not None
        path, start, end = self.file
        fd = os.open(path, os.O_RDONLY)
        try:
            sent = await sendfile(fd, start, end - start)
        finally:
            os.close(fd)
        await send({"type": SENT, "bytes": sent})  # for the app's count; not forwarded
        if self.body_iter is not None:
            await self.body_iter.aclose()
        self.body_iter = file_chunks(path, start + sent, end)

    async def _pump(self, send: Send, scope: anyio.CancelScope) -> None:
        assert self.body_iter is not None
        try:
            async for chunk in self.body_iter:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                # uvicorn's send returns at once for a client that left: let the disconnect
                # listener run, or the rest of the file is read for nobody
                await anyio.lowlevel.checkpoint()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except Aborted as exc:  # the caller cuts the connection (the body stays incomplete)
            self.aborted = exc
        scope.cancel()


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
