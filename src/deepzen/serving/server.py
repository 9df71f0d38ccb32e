"""Running the app on uvicorn: ``deepzen serve`` and the load benchmark start servers here.

uvicorn answers requests it cannot parse (a non-numeric or 5,000-digit ``Content-Length``, a
broken request line) itself, before the app sees them; :class:`JSONErrorProtocol` makes that
answer the same ``{"error": ..., "status": 400}`` as the app's. On SIGTERM or Ctrl-C uvicorn stops
accepting connections, finishes the requests in flight (up to the request timeout), and then the
app's lifespan stops the model's worker.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from typing import Callable

import torch

from deepzen.serving.app import create_app
from deepzen.serving.servables import Servable

try:
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ModuleNotFoundError as missing:
    raise ImportError(f"deepzen serve needs the serve extra (pip install 'deepzen[serve]'): the package "
                      f"{missing.name!r} is not installed") from missing


class JSONErrorProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, with its answer to unparsable requests in the app's JSON error format."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": f"{msg} Expected an HTTP/1.1 request with a numeric Content-Length",
                           "status": 400}).encode()
        head = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n")
        self.transport.write(head + body)
        self.transport.close()


class ModelServer(uvicorn.Server):
    """A uvicorn server for one servable; ``on_ready(url)`` is called once it listens."""

    def __init__(self, servable: Servable, log_requests: bool = False, on_ready: Callable[[str], None] | None = None):
        self.on_ready = on_ready
        settings = servable.settings
        config = uvicorn.Config(create_app(servable), host=settings.host, port=settings.port,
                                http=JSONErrorProtocol, loop="auto", lifespan="on", access_log=log_requests,
                                log_level="info" if log_requests else "warning",
                                limit_concurrency=settings.max_connections,
                                timeout_graceful_shutdown=int(settings.request_timeout) + 1, server_header=False)
        super().__init__(config)
        self.url: str | None = None

    @contextlib.contextmanager
    def capture_signals(self):
        """SIGINT and SIGTERM start the graceful shutdown (as in uvicorn), and the process then ends normally:
        uvicorn would raise the signal again afterwards, killing the process before it reports that it stopped."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {number: signal.signal(number, self.handle_exit) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in original.items():
                signal.signal(number, handler)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            self.url = f"http://{host}:{port}"
            if self.on_ready is not None:
                self.on_ready(self.url)


def serve(servable: Servable, log_requests: bool = False, on_ready: Callable[[str], None] | None = None) -> None:
    """Serves until SIGTERM or Ctrl-C, then finishes the requests in flight and returns."""
    torch.set_num_threads(servable.settings.torch_threads)
    ModelServer(servable, log_requests, on_ready).run()
