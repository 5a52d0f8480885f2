"""The example service: a small, real HTTP server the pipeline builds, scans and deploys.

It answers
  GET /healthz  -> 200 {"status": "ok"}                    (load balancer and ECS health checks)
  GET /version  -> 200 {"version": ..., "service": ...}    (tells blue from green in smoke tests)
  GET /         -> 200 a one-line greeting
and 404 for anything else. Only the standard library is used, so the image has no third-party
packages to patch.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOG = logging.getLogger("service")


class Handler(BaseHTTPRequestHandler):
    """Routes the three endpoints; everything else is 404."""

    server_version = "service"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        info: dict[str, str] = self.server.info  # type: ignore[attr-defined]
        if path == "/healthz":
            self._reply(HTTPStatus.OK, {"status": "ok"})
        elif path == "/version":
            self._reply(HTTPStatus.OK, {"version": info["version"], "service": info["name"]})
        elif path == "/":
            self._reply(HTTPStatus.OK, {"message": f"hello from {info['name']} {info['version']}"})
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": "not found", "path": path})

    def do_HEAD(self) -> None:
        self.do_GET()

    def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base-class name
        LOG.info("%s %s", self.address_string(), format % args)


def make_server(host: str, port: int, *, version: str, name: str) -> ThreadingHTTPServer:
    """Bind a server; port 0 picks a free port (used by the tests)."""
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.info = {"version": version, "name": name}  # type: ignore[attr-defined]
    return server


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
    port = int(os.environ.get("PORT", "8080"))
    server = make_server(
        "0.0.0.0",  # noqa: S104 - a container listens on all of its interfaces
        port,
        version=os.environ.get("SERVICE_VERSION", "dev"),
        name=os.environ.get("SERVICE_NAME", "webapp"),
    )

    # ECS stops tasks with SIGTERM: finish in-flight requests, then exit.
    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    LOG.info("listening on port %d, version %s", port, server.info["version"])  # type: ignore[attr-defined]
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
