"""The dashboard's HTTP server: the standard library's ThreadingHTTPServer.

Why not a framework: the server answers a handful of JSON routes, static
files from a fixed list and one SSE stream per open run page; a thread per
connection is what SSE needs anyway, and the stdlib adds no dependency, no
ASGI loop and nothing to keep patched. The costly work (index, curves) is
cached in ``api``; the server only routes and guards.

Guards, because everything shown comes from trainers (untrusted):
- pages build the DOM with textContent only, under a strict CSP (no inline
  script or style, nothing from another origin);
- static files are served from a list made at start-up, looked up by name:
  a request path never becomes a file path;
- requests whose Host is not this server's are refused (DNS rebinding);
- a POST (stop) needs the per-server token from the page and a same-origin
  Origin/Sec-Fetch-Site; ``read_only`` refuses every POST.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import SpecError, TrainforgeError
from .api import DashboardAPI, NotFound
from .query import QueryError

log = logging.getLogger(__name__)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGES = {"": "runs.html", "run": "run.html", "compare": "compare.html", "tuning": "tuning.html"}
MAX_STREAMS = 16          # open SSE streams (run pages) at once; more get 503 and retry
MAX_BODY = 4096
TOKEN_HEADER = "X-Trainforge-Token"
_SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


def load_static() -> dict[str, tuple[bytes, str]]:
    """Every file of the package's static folder: URL name -> (bytes, type)."""
    files: dict[str, tuple[bytes, str]] = {}
    root = resources.files("trainforge.dashboard") / "static"

    def walk(folder: Any, prefix: str) -> None:
        for entry in folder.iterdir():
            name = f"{prefix}{entry.name}"
            if entry.is_dir():
                walk(entry, f"{name}/")
            elif entry.is_file():
                kind = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
                if kind.startswith("text/") or kind in ("application/javascript",):
                    kind += "; charset=utf-8"
                files[name] = (entry.read_bytes(), kind)

    walk(root, "")
    return files


class Dashboard:
    """What every request handler shares: the API, static files, the token."""

    def __init__(self, api: DashboardAPI, host: str, port: int, read_only: bool = False):
        self.api = api
        self.static = load_static()
        self.token = secrets.token_urlsafe(32)
        self.read_only = read_only
        self.host, self.port = host, port
        self.streams = threading.BoundedSemaphore(MAX_STREAMS)
        self.closing = threading.Event()

    def allowed_host(self, header: str | None) -> bool:
        """Only names of this server; a server bound to every address (in a
        cluster, behind a Service) cannot know its names and takes any."""
        if self.host in ("0.0.0.0", "::", ""):
            return True
        if not header:
            return False
        names = {self.host, "localhost", "127.0.0.1", "[::1]"}
        return header in names or header in {f"{n}:{self.port}" for n in names}

    def page(self, file: str) -> bytes:
        body, _ = self.static[file]
        return body.replace(b"@@TOKEN@@", (self.token if not self.read_only else "").encode()) \
                   .replace(b"@@BACKEND@@", self.api.backend.name.encode())


class Handler(BaseHTTPRequestHandler):
    server_version = "trainforge-ui"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    dashboard: Dashboard  # set on the subclass made by make_server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm
        # and the client's delayed ACK add ~40 ms to every keep-alive response.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    # -- responses ---------------------------------------------------------------
    def _headers(self, status: int, kind: str, length: int | None, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()

    def _send(self, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None) -> None:
        self._headers(status, kind, len(body), extra)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
        self._send(status, body, "application/json", {"Cache-Control": "no-store"})

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    # -- dispatch ----------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        if not self.dashboard.allowed_host(self.headers.get("Host")):
            return self._error(HTTPStatus.MISDIRECTED_REQUEST, "unknown Host; open the dashboard at the address "
                                                               "`trainforge ui` printed")
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            if method == "POST":
                return self._post(parts)
            if parts and parts[0] == "api":
                return self._api_get(parts[1:], params)
            if parts and parts[0] == "static":
                return self._static("/".join(parts[1:]))
            return self._page(parts)
        except (QueryError, SpecError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except NotFound as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc))
        except TrainforgeError as exc:
            self._error(HTTPStatus.BAD_GATEWAY, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # a bug: answer it, log it, keep serving
            log.exception("dashboard request %s failed", self.path[:200])
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (see the server's log)")

    def _page(self, parts: list[str]) -> None:
        file = PAGES.get(parts[0] if parts else "")
        if file is None or len(parts) > 2:
            return self._error(HTTPStatus.NOT_FOUND, "no such page")
        self._send(HTTPStatus.OK, self.dashboard.page(file), "text/html; charset=utf-8",
                   {"Cache-Control": "no-store"})

    def _static(self, name: str) -> None:
        found = self.dashboard.static.get(name)
        if found is None or name.endswith(".html"):
            return self._error(HTTPStatus.NOT_FOUND, "no such file")
        self._send(HTTPStatus.OK, found[0], found[1], {"Cache-Control": "max-age=3600"})

    def _api_get(self, parts: list[str], params: dict[str, str]) -> None:
        api = self.dashboard.api
        match parts:
            case ["info"]:
                return self._json(200, {"backend": api.backend.name, "read_only": self.dashboard.read_only,
                                        "tuning": api.tuning is not None})
            case ["runs"]:
                return self._json(200, api.runs(params))
            case ["columns"]:
                return self._json(200, api.columns())
            case ["runs", name]:
                return self._json(200, api.run(name))
            case ["runs", name, "metrics"]:
                return self._json(200, api.metrics(name, params))
            case ["runs", name, "logs"]:
                return self._json(200, api.logs(name, params))
            case ["runs", name, "events"]:
                return self._events(name)
            case ["runs", name, "artifacts", kind]:
                return self._artifact(name, kind)
            case ["compare"]:
                return self._json(200, api.compare(params))
            case ["tuning"]:
                return self._json(200, api.tuning_jobs())
            case ["tuning", name]:
                return self._json(200, api.tuning_job(name))
        self._error(HTTPStatus.NOT_FOUND, "no such API route (see the README: Dashboard)")

    def _post(self, parts: list[str]) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return self._error(HTTPStatus.BAD_REQUEST, "Content-Length: not a number")
        if not 0 <= length <= MAX_BODY:
            return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
        self.rfile.read(length)
        problem = self._csrf_problem()
        if problem:
            return self._error(HTTPStatus.FORBIDDEN, problem)
        api = self.dashboard.api
        match parts:
            case ["api", "runs", name, "stop"]:
                return self._json(200, api.stop(name))
            case ["api", "tuning", name, "stop"]:
                return self._json(200, api.stop_tuning(name))
        self._error(HTTPStatus.NOT_FOUND, "no such API route")

    def _csrf_problem(self) -> str | None:
        if self.dashboard.read_only:
            return "this dashboard is read-only (trainforge ui --read-only)"
        token = self.headers.get(TOKEN_HEADER, "")
        if not secrets.compare_digest(token.encode(), self.dashboard.token.encode()):
            return f"missing or wrong {TOKEN_HEADER} header (it is in the page's tf-token meta tag)"
        if self.headers.get("Sec-Fetch-Site") not in (None, "same-origin", "none"):
            return "cross-site request refused"
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != self.headers.get("Host"):
            return "cross-origin request refused"
        return None

    def _artifact(self, name: str, kind: str) -> None:
        from ..storage import open_store

        uri, filename = self.dashboard.api.artifact(name, kind)
        store = open_store(uri)
        path = store.local_path(uri)
        with tempfile.TemporaryDirectory(prefix="trainforge-ui-") as scratch:
            if path is None or not os.path.isfile(path):  # not on this machine: fetched first
                path = os.path.join(scratch, "artifact")
                store.download_file(uri, path)
            size = os.path.getsize(path)
            self._headers(HTTPStatus.OK, "application/octet-stream", size, {
                "Content-Disposition": f'attachment; filename="{_SAFE_FILENAME.sub("_", filename)}"',
                "Cache-Control": "no-store"})
            with open(path, "rb") as fh:
                shutil.copyfileobj(fh, self.wfile, 1 << 20)

    def _events(self, name: str) -> None:
        dashboard = self.dashboard
        if self.command == "HEAD":
            dashboard.api.run(name)  # 404 for no such run
            return self._headers(HTTPStatus.OK, "text/event-stream", 0, {"Cache-Control": "no-store"})
        if not dashboard.streams.acquire(blocking=False):
            return self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"more than {MAX_STREAMS} live pages are open")
        stop = threading.Event()
        try:
            events = dashboard.api.events(name, stop)
            first = next(events, None)  # JobNotFound etc. as a plain error, before the stream starts
            self._headers(HTTPStatus.OK, "text/event-stream", None,
                          {"Cache-Control": "no-store", "Connection": "close", "X-Accel-Buffering": "no"})
            self.close_connection = True
            item = first
            while item is not None and not dashboard.closing.is_set():
                event, data = item
                chunk = ": ping\n\n" if event == "ping" else \
                    f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), allow_nan=False)}\n\n"
                self.wfile.write(chunk.encode())
                self.wfile.flush()
                item = next(events, None)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            stop.set()
            dashboard.streams.release()


def make_server(api: DashboardAPI, host: str = "127.0.0.1", port: int = 8686,
                read_only: bool = False) -> tuple[ThreadingHTTPServer, Dashboard]:
    """A server bound to ``host:port`` (port 0: any free one), not yet serving."""
    handler = type("DashboardHandler", (Handler,), {})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    dashboard = Dashboard(api, host, server.server_address[1], read_only)
    handler.dashboard = dashboard  # type: ignore[attr-defined]
    return server, dashboard
