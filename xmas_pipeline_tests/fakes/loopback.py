"""The lifecycle every HTTP fake shares: a server on 127.0.0.1 served from a daemon thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from socketserver import BaseRequestHandler


class LoopbackServer:
    """A `ThreadingHTTPServer` on 127.0.0.1 (an ephemeral port), served by `start()`.

    The socket is bound when the object is made, so a fake can set attributes on `server`
    that its handler reads before any request can reach it. `before_close` runs between
    `shutdown()` (no new requests) and `server_close()`.
    """

    def __init__(
        self,
        handler_class: type[BaseRequestHandler],
        name: str | None = None,
        *,
        before_close: Callable[[], None] | None = None,
    ) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
        self.server.daemon_threads = True  # a stuck request must not hold the test run open
        self._name = name
        self._before_close = before_close
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LoopbackServer:
        if self._thread is not None or self._closed:
            raise RuntimeError("a LoopbackServer is started once")
        # A short poll interval so that stop() returns quickly.
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self._name,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:  # shutdown() would wait forever on a loop never run
            self.server.shutdown()
        if self._before_close is not None:
            self._before_close()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
