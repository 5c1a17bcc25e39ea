"""A stand-in for the Hugging Face hub on 127.0.0.1, enough of it for file downloads (a test helper).

Serves ``/{repo}/resolve/{revision}/{file}`` from memory with what the real hub does for a file download:
HEAD and GET, ``Range`` (206 + ``Content-Range``; 416 past the end), ``ETag``, ``X-Repo-Commit`` (huggingface_hub
needs it), and for LFS-like files a 302 to an absolute CDN URL carrying ``X-Linked-Etag`` (the file's sha256) and
``X-Linked-Size``, as the hub answers.  Unknown paths answer 404.

It also works as a plain HTTP proxy for those paths (a request with an absolute URL is served the same way),
so a test can point ``http_proxy`` at it.  Faults for tests, per file: ``cut_after`` (send that many body bytes, then drop the connection; once),
``stall`` (seconds to wait before the body; the server shutting down ends the wait), ``stall_after`` (send that
many body bytes, then wait until the server shuts down or the client goes), ``ignore_range``
(answer 200 with the whole file to a Range request).  Every request is logged (method, path, headers).
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

_RANGE_RE = re.compile(r"bytes=(\d+)-(\d*)$")
COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the repo commit every resolve answer names


@dataclass
class StubFile:
    data: bytes
    redirect: bool = False  # LFS-like: 302 to http://localhost:<port>/cdn/<sha256> with X-Linked-Etag
    linked_etag: str | None = None  # override the X-Linked-Etag value (e.g. to simulate a lying hub)
    cut_after: int | None = None  # drop the connection after this many body bytes, on the next GET only
    stall: float = 0.0  # wait this long before sending the body
    stall_after: int | None = None  # send this many body bytes, then hang (until the server closes)
    ignore_range: bool = False
    redirect_host: str | None = None  # redirect to this host name (same port), e.g. "localhost": another origin

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_id(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    headers: dict[str, str]
    target: str  # the raw request target: an absolute URL when the client came through us as a proxy


class HubStub:
    """Use as a context manager; ``endpoint`` is the base URL to put in ``HF_ENDPOINT``."""

    def __init__(self):
        self.files: dict[str, StubFile] = {}
        self.requests: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- content ---

    def add_file(self, repo: str, filename: str, data: bytes, revision: str = "main", **faults) -> StubFile:
        stub_file = StubFile(data, **faults)
        self.files[f"/{repo}/resolve/{revision}/{filename}"] = stub_file
        return stub_file

    def requests_for(self, filename: str, method: str = "GET") -> list[LoggedRequest]:
        """Requests whose path ends with the (URL-quoted) file name or goes to its CDN path."""
        with self._lock:
            logged = list(self.requests)
        cdn_paths = {f"/cdn/{f.sha256}" for key, f in self.files.items() if key.endswith("/" + filename)}
        return [
            r for r in logged if r.method == method and (r.path.endswith("/" + quote(filename)) or r.path in cdn_paths)
        ]

    # --- server ---

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubStub:
        stub = self

        class Handler(_Handler):
            hub = stub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def _log(self, request: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _lookup(self, path: str) -> StubFile | None:
        if path.startswith("/cdn/"):
            sha = path[len("/cdn/") :]
            return next((f for f in self.files.values() if f.sha256 == sha), None)
        return self.files.get(unquote(path))


class _Handler(BaseHTTPRequestHandler):
    hub: HubStub
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet
        pass

    def do_HEAD(self):
        self._serve(send_body=False)

    def do_GET(self):
        self._serve(send_body=True)

    def _serve(self, send_body: bool) -> None:
        hub = self.hub
        path = urlsplit(self.path).path if self.path.startswith("http") else self.path.split("?", 1)[0]
        hub._log(LoggedRequest(self.command, path, {k.lower(): v for k, v in self.headers.items()}, self.path))
        stub_file = hub._lookup(path)
        if stub_file is None:
            self._plain(404, b"Entry not found")
            return
        if stub_file.redirect and not path.startswith("/cdn/"):
            self.send_response(302)
            host = stub_file.redirect_host or "localhost"  # another host, as the hub's CDN is
            self.send_header("Location", f"http://{host}:{self.server.server_address[1]}/cdn/{stub_file.sha256}")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("X-Linked-Etag", f'"{stub_file.linked_etag or stub_file.sha256}"')
            self.send_header("X-Linked-Size", str(len(stub_file.data)))
            self.send_header("ETag", f'"{stub_file.linked_etag or stub_file.sha256}"')
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            return
        data = stub_file.data
        start, status = 0, 200
        match = _RANGE_RE.match(self.headers.get("Range", ""))
        if match and not stub_file.ignore_range:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                return
            data = data[start : end + 1]
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        # A non-LFS file's ETag on the hub is its git blob id (not a sha256); the CDN's is the sha256.
        self.send_header("ETag", f'"{stub_file.sha256 if path.startswith("/cdn/") else stub_file.git_id}"')
        if not path.startswith("/cdn/"):
            self.send_header("X-Repo-Commit", COMMIT)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/{len(stub_file.data)}")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if not send_body:
            return
        if stub_file.stall and hub._closing.wait(stub_file.stall):
            return
        if stub_file.stall_after is not None:
            self.wfile.write(data[: stub_file.stall_after])
            self.wfile.flush()
            hub._closing.wait(60)
            return
        if stub_file.cut_after is not None:
            cut, stub_file.cut_after = stub_file.cut_after, None
            self.wfile.write(data[:cut])
            self.wfile.flush()
            return  # close_connection: the client sees fewer bytes than Content-Length
        self.wfile.write(data)

    def _plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.command != "HEAD":
            self.wfile.write(body)


def isolate_hub_env(monkeypatch, home) -> None:
    """No hub endpoint, token, offline flag, proxy or cache from the developer's environment reaches a test (nor
    the download's child process, which inherits the environment): ``home`` becomes an empty ``HF_HOME``."""
    for name in (
        "HF_ENDPOINT",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_TOKEN_PATH",
        "HF_HUB_CACHE",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("HF_HOME", str(home))  # never a developer's real token or cache
