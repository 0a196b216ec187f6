"""The `vidsearch serve` web app: a route table of plain functions over a LiveIndex (search and status as JSON, frames
of a moment, indexed media by id with HTTP Range), behind a host check and, off loopback, a token."""

from __future__ import annotations

import asyncio
import hmac
import mimetypes
import os
import re
import shlex
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .errors import BadVideo, IndexProblem, UsageError, VidsearchError
from .live import LiveIndex

STATIC = Path(__file__).resolve().parent / "static"
MAX_K = 100  # a larger k is cut to this: every hit may cost a thumbnail strip in the page
MAX_UPLOAD = 16 << 20  # bytes of an image query's body
MAX_QUERY = 2000  # characters of a query's text
STRIP_FRAMES, STRIP_SIZE, THUMB_SIZE = 5, 96, 224
COOKIE = "vidsearch_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
MOMENT_ID = re.compile(r"(\d{1,12})-(\d{1,12})-(\d{1,12})")
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' blob:; media-src 'self'; object-src 'none'; "
                                 b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server on this machine."""
    import ipaddress

    if host.strip("[]").lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Gate:
    """ASGI middleware: security headers on every response; a Host header naming this machine when no token is set
    (so a web page cannot reach a loopback server through DNS rebinding); and, with a token, the token on every
    request as `Authorization: Bearer TOKEN`, an `X-Vidsearch-Token` header or the cookie that the one-time login
    URL (`/?login=CODE`) sets."""

    def __init__(self, app, *, token: str | None, login_code: str | None):
        self.app = app
        self.token = token
        self._login_code = login_code
        self._login_lock = threading.Lock()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.token is None:
            host = headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name.lower() not in LOOPBACK_NAMES:
                return await PlainTextResponse("unknown host", 421)(scope, receive, send_with_headers)
            return await self.app(scope, receive, send_with_headers)
        if self._authorised(headers):
            return await self.app(scope, receive, send_with_headers)
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if scope["path"] == "/" and "login" in query and self._use_login_code(query["login"]):
            rest = urlencode([(k, v) for k, v in parse_qsl(scope["query_string"].decode("latin-1")) if k != "login"])
            response = RedirectResponse("/" + (f"?{rest}" if rest else ""), 303)
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
            return await response(scope, receive, send_with_headers)
        return await JSONResponse({"error": "this server needs its token: open the login URL it printed, or send the "
                                            "header `Authorization: Bearer TOKEN`"}, 401)(scope, receive, send_with_headers)

    def _authorised(self, headers: dict[str, str]) -> bool:
        offered = []
        if headers.get("authorization", "").startswith("Bearer "):
            offered.append(headers["authorization"][len("Bearer "):].strip())
        if "x-vidsearch-token" in headers:
            offered.append(headers["x-vidsearch-token"].strip())
        if "cookie" in headers:
            cookies = SimpleCookie()
            try:
                cookies.load(headers["cookie"])
            except Exception:  # a malformed cookie header authorises nothing
                cookies = {}
            if COOKIE in cookies:
                offered.append(cookies[COOKIE].value)
        return any(hmac.compare_digest(value.encode(), self.token.encode()) for value in offered)

    def _use_login_code(self, code: str) -> bool:
        """True once for the right code; then it is spent."""
        with self._login_lock:
            if self._login_code is None or not hmac.compare_digest(code.encode(), self._login_code.encode()):
                return False
            self._login_code = None
            return True


class FrameCache:
    """JPEG bytes of moments' frames, the most recently used kept, keyed by what they show: the moment and the
    file's size and mtime (a re-encoded file gets new frames)."""

    def __init__(self, entries: int = 512):
        self.entries = entries
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, make: Callable[[], bytes]) -> bytes:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        made = make()
        with self._lock:
            self._items[key] = made
            while len(self._items) > self.entries:
                self._items.popitem(last=False)
        return made


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


def error_status(exc: VidsearchError) -> int:
    """400 for a bad request, 409 for an index that cannot answer yet (empty, or its model changed), 500 otherwise."""
    if isinstance(exc, UsageError):
        return 400
    return 409 if isinstance(exc, IndexProblem) else 500


def query_options(request: Request) -> dict:
    """The `query` options of a search request: q, k (capped at MAX_K), path (repeatable), group_by, min_score, mode,
    scale. UsageError for a value `query` would refuse."""
    params = request.query_params
    text = params.get("q", "")
    if len(text) > MAX_QUERY:
        raise UsageError(f"q: at most {MAX_QUERY} characters")
    try:
        k = int(params.get("k", "10"))
        min_score = float(params["min_score"]) if params.get("min_score", "") != "" else None
    except ValueError:
        raise UsageError("k must be a whole number and min_score a number") from None
    group_by = params.get("group_by", "moment") or "moment"
    if group_by not in ("moment", "video"):
        raise UsageError(f"group_by must be moment or video, got {group_by!r}")
    from .answers import check_query_options

    check_query_options(k=k, min_score=min_score)
    return {"text": text, "k": min(k, MAX_K), "paths": [p for p in params.getlist("path") if p], "group_by": group_by,
            "min_score": min_score, "mode": params.get("mode", "auto") or "auto",
            "scale": params.get("scale", "segment") or "segment"}


def create_app(index_dir: Path, *, token: str | None = None, login_code: str | None = None, device: str = "auto",
               note: Callable[[str], None] = lambda line: None, max_upload: int = MAX_UPLOAD,
               warm: bool = False) -> Gate:
    """The app over the index folder `index_dir`. With `token`, every request must carry it (see Gate); without one,
    only requests addressed to a loopback name are answered. `warm` loads the model and FAISS before returning."""
    live = LiveIndex(index_dir, device=device, note=note)
    if warm:
        try:
            live.warm()
        except IndexProblem as exc:  # an empty index: searches answer 409 until `index` has run
            note(str(exc))
    frames = FrameCache()
    codecs: dict[tuple, str | None] = {}

    def search_json(options: dict, images: list[Path]) -> dict:
        from .answers import search_moments
        from .report import as_json
        from .terms import parse_sequence

        terms = parse_sequence(options["text"], images)
        with live.reading():
            moments = search_moments(live.searcher(), terms, k=options["k"], group_by=options["group_by"],
                                     paths=options["paths"], min_score=options["min_score"], mode=options["mode"],
                                     scale=options["scale"])  # one torch thread, as `query`: see bench/RESULTS.md
        return as_json(options["text"], moments, {})

    async def answer(work: Callable[[], dict]) -> Response:
        try:
            return JSONResponse(await run_in_threadpool(work))
        except VidsearchError as exc:
            return error(error_status(exc), str(exc))

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                            headers={"cache-control": "no-cache"})

    async def search(request: Request) -> Response:
        try:
            options = query_options(request)
        except UsageError as exc:
            return error(400, str(exc))
        if request.method == "GET":
            return await answer(lambda: search_json(options, []))
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_upload):
            return error(413, f"the image is larger than {max_upload >> 20} MiB")
        with tempfile.TemporaryDirectory(prefix="vidsearch-upload-") as folder:
            upload = Path(folder) / "image"
            size = 0
            with open(upload, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > max_upload:
                        return error(413, f"the image is larger than {max_upload >> 20} MiB")
                    out.write(chunk)
            if size == 0:
                return error(400, "POST the image as the request body")

            def work() -> dict:
                from .frames import read_image

                try:
                    read_image(upload, size=16)
                except BadVideo as exc:
                    raise UsageError(f"not an image ({exc.reason})") from None
                return search_json(options, [upload])

            return await answer(work)

    async def status(request: Request) -> Response:
        from .answers import status_info

        def work() -> dict:
            with live.reading() as idx:
                return status_info(idx)

        return await answer(work)

    def indexed_video(video_id: int) -> dict | None:
        video = live.video(video_id)
        return video if video is not None and os.path.isfile(video["path"]) else None

    async def video_info(request: Request) -> Response:
        """What the page needs to play a video: its codec and MIME type, and the `--open` player command."""
        from .player import PLAYERS, player_command

        video = await run_in_threadpool(indexed_video, request.path_params["video_id"])
        if video is None:
            return error(404, "no such video")
        try:
            start = max(0.0, float(request.query_params.get("start", "0")))
        except ValueError:
            return error(400, "start must be a number of seconds")
        key = (video["id"], video["size"], video["mtime"])
        if key not in codecs:
            codecs[key] = await run_in_threadpool(video_codec, video["path"])
        return JSONResponse({"id": video["id"], "path": video["path"], "name": Path(video["path"]).name,
                             "codec": codecs[key], "mime": media_type(video["path"]), "duration": video["duration"],
                             "player": shlex.join(player_command(PLAYERS[0], video["path"], start))})

    async def media(request: Request) -> Response:
        video = await run_in_threadpool(indexed_video, request.path_params["video_id"])
        if video is None:
            return error(404, "no such video")
        return FileResponse(video["path"], media_type=media_type(video["path"]), headers={"cache-control": "no-cache"})

    def moment_frames(request: Request, strip: bool) -> Response:
        from .thumbnails import jpeg, moment_still, strip_frames

        match = MOMENT_ID.fullmatch(request.path_params["moment_id"])
        video = indexed_video(int(match.group(1))) if match else None
        if video is None:
            return error(404, "no such moment")
        start, end = int(match.group(2)) / 1000, int(match.group(3)) / 1000
        if end < start or start > (video["duration"] or 0) + 1:
            return error(404, "no such moment")

        def make() -> bytes:
            import numpy as np

            if not strip:
                return jpeg(moment_still(video["path"], start, end, size=THUMB_SIZE)[1])
            shots = [rgb for _, rgb in strip_frames(video["path"], start, end, count=STRIP_FRAMES, size=STRIP_SIZE)]
            return jpeg(np.concatenate(shots, axis=1))

        try:
            body = frames.get((match.group(0), strip, video["size"], video["mtime"]), make)
        except BadVideo as exc:
            return error(404, f"no preview: {exc.reason}")
        return Response(body, media_type="image/jpeg", headers={"cache-control": "private, max-age=86400"})

    async def strip(request: Request) -> Response:
        return await run_in_threadpool(moment_frames, request, True)

    async def thumbnail(request: Request) -> Response:
        return await run_in_threadpool(moment_frames, request, False)

    routes = [
        Route("/", page),
        Route("/api/search", search, methods=["GET", "POST"]),
        Route("/api/status", status),
        Route("/api/videos/{video_id:int}", video_info),
        Route("/api/strip/{moment_id}", strip),
        Route("/api/thumbnail/{moment_id}", thumbnail),
        Route("/media/{video_id:int}", media),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]
    app = Starlette(routes=routes)
    app.state.live = live
    return Gate(app, token=token, login_code=login_code)


def media_type(path: str) -> str:
    """The Content-Type of a video file, by its name."""
    known = {".mkv": "video/x-matroska", ".webm": "video/webm", ".mp4": "video/mp4", ".m4v": "video/mp4",
             ".mov": "video/quicktime"}
    return known.get(Path(path).suffix.lower()) or mimetypes.guess_type(path)[0] or "application/octet-stream"


def video_codec(path: str) -> str | None:
    """The FFmpeg name of a file's first video stream's codec (h264, hevc, vp9, mpeg4...), or None."""
    import av

    try:
        with av.open(path) as container:
            streams = container.streams.video
            return streams[0].codec_context.name if streams else None
    except (av.FFmpegError, OSError):
        return None


def run(app, *, host: str, port: int, ready: Callable[[int], None]) -> None:
    """Serve `app` on host:port with uvicorn until Ctrl-C or SIGTERM; `ready(port)` is called once it listens (port 0
    picks a free port)."""
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on connections of a socket that names it, and
    # with Nagle on, a response's body waited 40 ms for the ACK of its headers on every kept-alive connection
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.listen(128)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)

    async def main() -> None:
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started:
            ready(sock.getsockname()[1])
        await task

    asyncio.run(main())
