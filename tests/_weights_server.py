"""A real HTTP server on 127.0.0.1 that serves weight files as a mirror does, faults on request.

Files sit under ``/<host>/<path>`` of the URL they stand for, so that the download code
reaches them through ``RESNEXT_DET_MIRROR`` exactly as a user's mirror. A fault makes the
server misbehave for one path the way real servers and proxies do: cut the connection,
ignore range requests, send an HTML page, redirect, stop answering.
"""

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import urlparse

__all__ = ["FAULTS", "WeightsServer"]

FAULTS = (
    "cut_once",  # the first answer stops halfway, the next ones are whole
    "cut_always",  # every answer stops halfway through what it announces
    "no_range",  # range requests get the whole file (200), as from a simple server
    "wrong_range",  # range requests get the whole file as a part (206 from byte 0)
    "html",  # an HTML page, announced as text/html
    "html_as_file",  # an HTML page, announced as application/octet-stream
    "hang",  # accepts the request, never answers
    "hang_midway",  # sends half, then nothing
    "redirect_elsewhere",  # 302 to another host (localhost instead of 127.0.0.1)
    "redirect_here",  # 302 to another path of this host, which has the file
)
HTML_PAGE = b"<!DOCTYPE html>\n<html><body>Please log in to the proxy</body></html>\n"


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args) -> None:  # quiet: the tests read what they need
        pass

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        owner = self.server.owner
        path, wanted = self.path, self.headers.get("Range")
        owner.requests.append((path, wanted))
        faults = owner.faults.get(path, ())
        if "hang" in faults:
            owner.released.wait(30)
            return
        if "redirect_elsewhere" in faults or "redirect_here" in faults:
            host = "localhost" if "redirect_elsewhere" in faults else "127.0.0.1"
            self.send_response(302)
            self.send_header("Location", f"http://{host}:{owner.port}{path}.moved")
            self.end_headers()
            return
        data = owner.files.get(path.removesuffix(".moved"))  # where redirect_here points
        if data is None:
            self.send_error(404)
            return
        if "html" in faults or "html_as_file" in faults:
            data = HTML_PAGE
        start = 0
        found = re.fullmatch(r"bytes=(\d+)-", wanted or "")
        if found and "no_range" not in faults:
            start = int(found[1])
        if start >= len(data) > 0:
            self.send_error(416)  # Range Not Satisfiable: nothing is there from start on
            return
        part = bool(start)
        if found and "wrong_range" in faults:
            start, part = 0, True
        body = data[start:]
        self.send_response(206 if part else 200)
        kind = "text/html" if "html" in faults else "application/octet-stream"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        if part:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        cut = "cut_always" in faults or ("cut_once" in faults and owner.count(path) == 1)
        if cut or "hang_midway" in faults:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if "hang_midway" in faults:
                owner.released.wait(30)
            return  # HTTP/1.0: the connection closes, short of Content-Length
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: "WeightsServer"


class WeightsServer:
    """Serves ``put`` files at ``base``; started and stopped by the test (a context manager)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, tuple[str, ...]] = {}
        self.requests: list[tuple[str, Optional[str]]] = []  # (path, Range header)
        self.released = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "WeightsServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving and close the port (a later download finds nobody there)."""
        self.released.set()
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def path_of(url: str) -> str:
        parsed = urlparse(url)
        return f"/{parsed.netloc}{parsed.path}"

    def put(self, url: str, data: bytes, *faults: str) -> None:
        """Serve ``data`` as the mirror's copy of ``url``, with ``faults`` (see FAULTS)."""
        assert set(faults) <= set(FAULTS), faults
        self.files[self.path_of(url)] = data
        self.faults[self.path_of(url)] = faults

    def count(self, path: str) -> int:
        """How many requests ``path`` has had."""
        return sum(1 for p, _ in self.requests if p == path)

    def requests_for(self, url: str) -> list[Optional[str]]:
        """The Range header of each request for ``url``, in order."""
        return [wanted for p, wanted in self.requests if p == self.path_of(url)]
