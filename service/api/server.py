"""Serving the API with aiohttp's server, minus its habit of echoing malformed requests.

When aiohttp cannot parse a request (a header line over 8190 bytes, a NUL or other control
byte in a header, a bad request line), its protocol handler answers ``text/plain`` with the
parser's message, which quotes the first ~100 bytes of the offending line, and logs that
message at ERROR level with a traceback (``aiohttp.server`` logger,
``RequestHandler.handle_error``). An over-long ``Authorization: Bearer ...`` line thus put the
start of a credential in the answer and in the log. These requests never reach the app (no
middleware runs), so :class:`QuietRequestHandler` replaces ``handle_error`` for them: the
answer is problem+json (431 for a line too long, else 400) that quotes nothing, and the log is
one warning line with the status and the error's class name only. Errors inside the app are
unchanged (the app's own middlewares turn them into problem+json before this point).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from service.api.problems import problem_response

__all__ = ["QuietAppRunner", "QuietRequestHandler", "serve"]

log = structlog.get_logger("service.api.server")


class QuietRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering unparseable requests without quoting them."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError) or status >= 500:
            return super().handle_error(request, status, exc, message)
        too_long = isinstance(exc, LineTooLong)
        status = 431 if too_long else 400
        log.warning("http_request_unparseable", status=status, error=type(exc).__name__)
        response = problem_response(
            status,
            "Request Header Fields Too Large" if too_long else "Bad Request",
            "The request line or a header is too long."
            if too_long
            else "The request line or a header is malformed.",
            slug="unparseable-request",
        )
        response.force_close()
        return response


class _QuietServer(web.Server):
    def __call__(self) -> RequestHandler:
        return QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class QuietAppRunner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` whose connections use :class:`QuietRequestHandler`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _QuietServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )


async def _serve_forever(runner: web.AppRunner, host: str, port: int) -> None:
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await asyncio.Event().wait()  # until SIGINT/SIGTERM (GracefulExit) cancels it
    finally:
        await runner.cleanup()


def serve(app: web.Application, *, host: str, port: int, shutdown_timeout: float = 30.0) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, like :func:`aiohttp.web.run_app` (in-flight requests
    get ``shutdown_timeout`` seconds, then cleanup contexts run), via :class:`QuietAppRunner`."""
    options: dict[str, Any] = {"access_log": None, "shutdown_timeout": shutdown_timeout}
    runner = QuietAppRunner(app, handle_signals=True, **options)
    loop = asyncio.new_event_loop()
    main = loop.create_task(_serve_forever(runner, host, port))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
