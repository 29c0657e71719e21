"""The HTTP plumbing the API doubles share: a threaded server (127.0.0.1 and an ephemeral
port unless told otherwise) that hands every request to the double's ``_handle(handler, raw)``,
where ``raw`` is ``None`` for GET/HEAD and the raw request bytes for POST and DELETE.
Every request is kept in ``self.requests`` (method, path, lower-cased headers, the body
decoded from JSON where it is JSON, monotonic time) so tests can assert what was sent.

Standard library only: the Ollama double runs from its release artefact on lab hosts too.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackHTTPDouble(ABC):
    _server = None

    @property
    def url(self):
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __init__(self):
        self.requests = []
        self._lock = threading.Lock()

    @abstractmethod
    def _handle(self, handler, raw):
        """Answer one request on ``handler``; each double defines its API here."""

    def _record(self, handler, raw):
        """Keep the request in ``self.requests``; return its (lower-cased headers, decoded body)."""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        with self._lock:
            self.requests.append(
                {"method": handler.command, "path": handler.path, "headers": headers, "body": body, "at": time.monotonic()}
            )
        return headers, body

    def start(self, address="127.0.0.1", port=0):
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):
                pass

            def _body(self):
                length = int(self.headers.get("content-length") or 0)
                return self.rfile.read(length) if length else b""

            def do_GET(self):
                double._handle(self, None)

            def do_HEAD(self):
                double._handle(self, None)

            def do_POST(self):
                double._handle(self, self._body())

            def do_DELETE(self):
                double._handle(self, self._body())

        server_class = ThreadingHTTPServer
        if ":" in address:  # an IPv6 address such as ::1

            class server_class(ThreadingHTTPServer):  # noqa: N801 - a local class used as a type
                address_family = socket.AF_INET6

        self._server = server_class((address, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
