"""`animatediff ui`'s HTTP server: the page and a small JSON API over a `Studio`, on the standard library.

    GET  /                        the page
    GET  /api/state               models, form defaults, choices, history
    POST /api/refresh             scan the models folder again
    POST /api/generate            queue the form's settings → the job
    GET  /api/jobs/ID             a job's state, queue position and progress
    POST /api/jobs/ID/cancel      stop it (queued or running)
    GET  /api/jobs/ID/file        its result (?download=1: as an attachment)
    GET  /api/jobs/ID/config.yaml an `animatediff run` config that draws it again
    POST /api/upload?name=F       a video or picture (size-capped) → its id

Bad input answers 400 with {"error": one line}; the server keeps serving.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlparse

from animatediff.errors import InputError
from animatediff.pipeline.prompt_travel import INTERPOLATIONS
from animatediff.sampling.presets import get_preset, preset_names
from animatediff.sampling.schedulers import SCHEDULERS
from animatediff.ui.fields import LIMITS
from animatediff.ui.settings import FORMATS, Settings, parse, with_seed
from animatediff.ui.studio import Studio, human_size

logger = logging.getLogger(__name__)
MAX_JSON_BYTES = 2**20
MEDIA_TYPES = {".gif": "image/gif", ".webp": "image/webp", ".mp4": "video/mp4"}


def page() -> bytes:
    return resources.files("animatediff.ui").joinpath("page.html").read_bytes()


class Handler(BaseHTTPRequestHandler):
    studio: Studio  # set on the subclass `make_server` builds
    server_version = "animatediff-ui"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        logger.debug("%s " + format, self.address_string(), *args)

    # -- answers
    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: Any, status: int = 200) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _error(self, message: str, status: int = HTTPStatus.BAD_REQUEST) -> None:
        self._json({"error": message}, status)

    def _length(self) -> int:
        try:
            return max(int(self.headers.get("Content-Length") or 0), 0)
        except ValueError:
            raise InputError("Content-Length is not a number") from None

    def _body(self, cap: int) -> bytes:
        size = self._length()
        if size > cap:
            raise _TooLarge(f"request of {human_size(size)} is over the {human_size(cap)} cap")
        return self.rfile.read(size)

    # -- routes
    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802 - the base class's name
        self._route("POST")

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        try:
            if method == "GET" and not parts:
                return self._send(200, page(), "text/html; charset=utf-8")
            if parts == ["favicon.ico"]:
                return self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            if parts[:1] != ["api"]:
                return self._error("not found", HTTPStatus.NOT_FOUND)
            route = (method, *parts[1:2])
            if route == ("GET", "state"):
                return self._json(self._state())
            if route == ("POST", "refresh"):
                return self._json(self.studio.refresh().as_json())
            if route == ("POST", "generate"):
                return self._generate()
            if route == ("POST", "upload"):
                return self._upload(query.get("name", [""])[0])
            if parts[1:2] == ["jobs"] and len(parts) >= 3:
                return self._job(method, parts[2], parts[3] if len(parts) > 3 else "", query)
            return self._error("not found", HTTPStatus.NOT_FOUND)
        except _TooLarge as err:
            self.close_connection = True  # the body is left unread
            return self._error(str(err), HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        except InputError as err:
            return self._error(str(err))

    def _state(self) -> dict[str, Any]:
        studio = self.studio
        return {
            "models": studio.catalog.as_json(),
            "defaults": Settings().as_json(),
            "limits": LIMITS,
            "schedulers": list(SCHEDULERS),
            "presets": [
                {
                    "name": p.name,
                    "scheduler": p.scheduler,
                    "steps": p.steps,
                    "guidance_scale": p.guidance_scale,
                    "describe": p.describe(),
                }
                for p in map(get_preset, preset_names())
            ],  # fmt: skip
            "formats": list(FORMATS),
            "interpolations": list(INTERPOLATIONS),
            "upload_cap": studio.uploads.cap,
            "history": [job.as_json() for job in studio.queue.history],
        }

    def _generate(self) -> None:
        try:
            raw = json.loads(self._body(MAX_JSON_BYTES) or b"{}")
        except ValueError:
            raise InputError("the form's fields are not valid JSON") from None
        settings = with_seed(parse(raw, self.studio.catalog))
        if settings.video:
            self.studio.uploads.path(settings.video)  # an upload that is gone is said now, not after the queue
        job = self.studio.queue.submit(settings)
        self._json(job.as_json(self.studio.queue.position(job)))

    def _upload(self, name: str) -> None:
        try:
            self.studio.uploads.check_size(self._length())
        except InputError as err:  # refused before its body is read
            raise _TooLarge(str(err)) from None
        data = self._body(self.studio.uploads.cap)
        self._json({"id": self.studio.uploads.add(name or "upload", data)})

    def _job(self, method: str, job_id: str, action: str, query: dict[str, list[str]]) -> None:
        queue = self.studio.queue
        job = queue.get(job_id)
        if method == "POST" and action == "cancel":
            return self._json(queue.cancel(job_id).as_json())
        if method == "GET" and not action:
            return self._json(job.as_json(queue.position(job)))
        if method == "GET" and action == "file" and job.output is not None:
            disposition = "attachment" if query.get("download") else "inline"
            headers = {"Content-Disposition": f'{disposition}; filename="{job.output.name}"'}
            media = MEDIA_TYPES.get(job.output.suffix, "application/octet-stream")
            return self._send(200, job.output.read_bytes(), media, headers)
        if method == "GET" and action == "config.yaml":
            name = (job.output.stem if job.output else job.id) + ".yaml"
            headers = {"Content-Disposition": f'attachment; filename="{name}"'}
            return self._send(200, self.studio.run_yaml(job).encode(), "application/x-yaml", headers)
        return self._error("not found", HTTPStatus.NOT_FOUND)


class _TooLarge(Exception):
    pass


def make_server(studio: Studio, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
    """A server for `studio` bound to host:port (port 0: a free one); `serve_forever()` runs it."""
    handler = type("StudioHandler", (Handler,), {"studio": studio})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
