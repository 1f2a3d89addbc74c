"""The ModelScope protocol of the fake hub (placeholder until implemented)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._server import Request, Response

if TYPE_CHECKING:
    from ._hub import FakeHub

__all__ = ["MsApp"]


class MsApp:
    """Answers ModelScope protocol requests for a :class:`FakeHub`."""

    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub

    def handle(self, req: Request) -> Response:
        return Response(404, {"Content-Type": "application/json"}, b'{"Code": 404}')
