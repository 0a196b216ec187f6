"""`vidsearch serve`'s API through Starlette's TestClient and a real server: media by id with HTTP Range, 404 for
unknown ids and traversal attempts, the token off loopback, upload limits; and (slow, on an index the CLI builds) the
search and status JSON equal to `query --json` and `status --json`, and an `index` run picked up without a restart."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import VIDSEARCH, run_cli, run_json
from index_helpers import library
from media import write_video
from starlette.testclient import TestClient

from vidsearch import serve
from vidsearch.db import Segment
from vidsearch.indexdir import IndexDir
from vidsearch.serve import create_app, is_loopback

LOCAL = "http://127.0.0.1"  # the Host a loopback server answers


# -- a small index written through the library (no model), for the tests that do not search ------------------------

@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """An index of one real video (random vectors, no model run) and one failed file; returns (home, video path,
    video id, failed id)."""
    root = tmp_path_factory.mktemp("serve-stored")
    video = write_video(root / "videos" / "clip.mp4", seconds=3, fps=10, size=(64, 48))
    index = IndexDir(root / "home", create=True)
    index.lock_for_writing()
    index.db.set_setting("model", {"spec": "tiny", "fingerprint": "0" * 16, "name": "tiny", "dim": 8, "weights": None})
    index.db.set_setting("settings", {"fps": 1.0, "window": 32, "segment": 1.0, "keep_ratio": 1.0, "deblock": True})
    vectors = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    segments = [Segment("segment", float(s), float(s + 1), v / np.linalg.norm(v)) for s, v in enumerate(vectors)]
    stat = video.stat()
    index.commit(lambda: ([], index.db.save_video(path=str(video), size=stat.st_size, mtime=stat.st_mtime, hash="h",
                                                 duration=3.0, fps=10.0, frames=30, segments=segments)))

    def fail():
        index.db.save_failure(path=str(root / "videos" / "broken.mp4"), size=1, mtime=1.0, error="not a video")
        return np.zeros(0, np.int64), []

    index.commit(fail)
    index.save_vectors()
    ids = {v["path"]: v["id"] for v in index.db.videos()}
    index.close()
    return root / "home", video, ids[str(video)], ids[str(root / "videos" / "broken.mp4")]


@pytest.fixture(scope="module")
def client(stored):
    return TestClient(create_app(stored[0]), base_url=LOCAL)


def test_the_page_and_its_static_files_are_served_with_a_strict_content_security_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "script-src" not in page.headers["content-security-policy"]  # 'self' only: no inline script runs
    for name in ("app.js", "app.css"):
        assert client.get(f"/static/{name}").content == (serve.STATIC / name).read_bytes()
    assert "innerHTML" not in (serve.STATIC / "app.js").read_text()  # every string goes in as text (el())


def test_media_is_served_by_id_with_range_requests(client, stored):
    _, video, video_id, _ = stored
    data = video.read_bytes()
    whole = client.get(f"/media/{video_id}")
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "video/mp4"
    part = client.get(f"/media/{video_id}", headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.content == data[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(data)}"
    tail = client.get(f"/media/{video_id}", headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    assert tail.headers["content-range"] == f"bytes {len(data) - 50}-{len(data) - 1}/{len(data)}"
    open_ended = client.get(f"/media/{video_id}", headers={"Range": f"bytes={len(data) - 10}-"})
    assert open_ended.status_code == 206 and open_ended.content == data[-10:]
    assert client.get(f"/media/{video_id}", headers={"Range": f"bytes={len(data) + 5}-"}).status_code == 416


def test_unknown_and_failed_ids_give_404(client, stored):
    _, _, video_id, failed_id = stored
    for path in (f"/media/{failed_id}", "/media/999999", "/media/0", "/api/videos/999999", f"/api/videos/{failed_id}",
                 "/api/strip/999999-0-1000", f"/api/strip/{failed_id}-0-1000", "/api/thumbnail/999999-0-1000",
                 "/api/strip/1-2", "/api/strip/abc", f"/api/strip/{video_id}-2000-1000", f"/api/strip/{video_id}-99000-99500",
                 "/media/1.5", "/media/-1", "/api/nothing", "/static/", "/static/missing.js"):
        assert client.get(path).status_code == 404, path
    assert client.get(f"/api/videos/{video_id}").json()["codec"] == "h264"


def raw_get(app, raw_path: bytes, headers=((b"host", b"127.0.0.1"),)) -> tuple[int, bytes]:
    """GET exactly these bytes as the request target (no client-side normalisation), as uvicorn would pass them."""
    from urllib.parse import unquote

    path, _, query = raw_path.partition(b"?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": unquote(path.decode("latin-1")), "raw_path": path, "query_string": query, "root_path": "",
             "headers": list(headers), "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8765)}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_traversal_attempts_give_404(stored):
    home, video, video_id, _ = stored
    app = create_app(home)
    secret = (home / "vidsearch.db").read_bytes()[:16]  # "SQLite format 3\0"
    attempts = [b"/media/../vidsearch.db", b"/media/..%2Fvidsearch.db", b"/media/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                b"/media/%2Fetc%2Fpasswd", b"/media//etc/passwd", b"/media/" + str(video).encode(),
                b"/media/" + str(video_id).encode() + b"/../../vidsearch.db", b"/media/" + str(video_id).encode() + b"%2F..",
                b"/static/../serve.py", b"/static/%2e%2e/serve.py", b"/static/..%2Fserve.py", b"/static/%2Fetc%2Fpasswd",
                b"/static/../../pyproject.toml", b"/static//etc/passwd", b"/api/strip/..%2F..%2Fetc%2Fpasswd",
                b"/api/thumbnail/%2Fetc%2Fpasswd", b"/api/videos/..%2F1", b"/vidsearch.db", b"/etc/passwd",
                b"/media?path=/etc/passwd", b"/media/?path=" + str(video).encode()]
    for attempt in attempts:
        status, body = raw_get(app, attempt)
        assert status == 404, (attempt, status)
        assert secret not in body and b"root:" not in body and b"def create_app" not in body, attempt


def test_a_loopback_server_answers_only_requests_addressed_to_a_loopback_name(stored):
    app = create_app(stored[0])
    assert raw_get(app, b"/api/status", [(b"host", b"127.0.0.1:8765")])[0] == 200
    assert raw_get(app, b"/api/status", [(b"host", b"localhost:8765")])[0] == 200
    assert raw_get(app, b"/api/status", [(b"host", b"[::1]:8765")])[0] == 200
    for host in (b"evil.example", b"evil.example:8765", b"127.0.0.1.evil.example", b""):  # DNS rebinding, no Host
        assert raw_get(app, b"/api/status", [(b"host", host)])[0] == 421, host
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.3.2.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")


def test_the_token_is_enforced_as_header_or_cookie_from_a_one_time_login_url(stored):
    token, code = "t" * 32, "c" * 20
    app = create_app(stored[0], token=token, login_code=code)
    anyone = TestClient(app, base_url="http://192.168.1.5:8765")
    for path in ("/", "/api/status", "/api/search?q=x", f"/media/{stored[2]}", "/static/app.js", f"/?login={'x' * 20}"):
        assert anyone.get(path, follow_redirects=False).status_code == 401, path
    assert anyone.get("/api/status", headers={"Authorization": "Bearer " + "u" * 32}).status_code == 401
    assert anyone.get("/api/status", headers={"Cookie": "vidsearch_token=" + "u" * 32}).status_code == 401
    assert anyone.get("/api/status", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert anyone.get("/api/status", headers={"X-Vidsearch-Token": token}).status_code == 200
    assert anyone.get(f"/media/{stored[2]}", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    browser = TestClient(app, base_url="http://192.168.1.5:8765")
    login = browser.get(f"/?login={code}&q=cats", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/?q=cats"  # the code leaves the address bar
    assert "httponly" in login.headers["set-cookie"].lower() and "samesite=strict" in login.headers["set-cookie"].lower()
    assert browser.get("/api/status").status_code == 200 and browser.get("/").status_code == 200  # the cookie
    other = TestClient(app, base_url="http://192.168.1.5:8765")
    assert other.get(f"/?login={code}", follow_redirects=False).status_code == 401  # the login URL works once


def test_oversized_or_bad_uploads_and_bad_options_are_refused(stored):
    small = TestClient(create_app(stored[0], max_upload=1000), base_url=LOCAL)
    refused = small.post("/api/search", content=b"\xff" * 2000, headers={"content-type": "image/jpeg"})
    assert refused.status_code == 413 and "larger than" in refused.json()["error"]

    def chunks():  # no Content-Length: the limit holds while the body streams in
        for _ in range(10):
            yield b"\xff" * 300

    assert small.post("/api/search", content=chunks(), headers={"content-type": "image/jpeg"}).status_code == 413
    lying = small.post("/api/search", content=b"x", headers={"content-length": str(10 ** 12)})
    assert lying.status_code in (400, 413)
    not_image = small.post("/api/search", content=b"plain text, not a picture")
    assert not_image.status_code == 400 and "not an image" in not_image.json()["error"]
    assert small.post("/api/search", content=b"").status_code == 400
    for query in ("k=0", "k=ten", "min_score=2", "min_score=nan", "group_by=file", "q=" + "a" * 3000):
        answer = small.get(f"/api/search?q=x&{query}")
        assert answer.status_code == 400 and answer.json()["error"], query


# -- the real CLI's index (tiny model), searched through the API -----------------------------------------------------

@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """a.mp4, b.mp4, c.mp4 and a subtitled d.mp4 indexed by the CLI with the tiny model; returns (home, folder)."""
    root = tmp_path_factory.mktemp("serve-indexed")
    folder = library(root / "videos")
    write_video(folder / "d.mp4", seconds=8, fps=5, size=(96, 64))
    (folder / "d.srt").write_text("1\n00:00:02,000 --> 00:00:04,500\npreheat the oven to <b>200</b> & wait\n")
    run_cli("index", str(folder), "--model", "tiny", "--segment", "2", home=root / "home")
    return root / "home", folder


QUERIES = [  # (API parameters, the same as `query` arguments)
    ({"q": "a gray square"}, ["a gray square"]),
    ({"q": "2:gray + white - dark", "k": "3"}, ["2:gray + white - dark", "-k", "3"]),
    ({"q": "square", "group_by": "video"}, ["square", "--group-by", "video"]),
    ({"q": "square", "path": ["b.mp4", "*/c.*"]}, ["square", "--path", "b.mp4", "--path", "*/c.*"]),
    ({"q": "square", "min_score": "-0.1"}, ["square", "--min-score", "-0.1"]),
    ({"q": "oven"}, ["oven"]),
    ({"q": '"preheat the oven"', "mode": "speech"}, ['"preheat the oven"', "--mode", "speech"]),
    ({"q": "gray then white"}, ["gray then white"]),
]


@pytest.mark.slow
def test_search_and_status_json_equal_the_clis(indexed):
    home, _ = indexed
    client = TestClient(create_app(home), base_url=LOCAL)
    for params, args in QUERIES:
        api = client.get("/api/search", params=params)
        assert api.status_code == 200, api.text
        cli = run_json("query", *args, "--index", str(home), "--device", "cpu")
        assert api.json() == cli, args
    assert any(h.get("text") for h in client.get("/api/search", params={"q": "oven"}).json()["hits"])
    assert client.get("/api/status").json() == run_json("status", "--index", str(home))


@pytest.mark.slow
def test_an_image_query_equals_the_clis_and_k_is_capped(indexed, tmp_path, monkeypatch):
    from vidsearch.frames import sample_frames
    from vidsearch.thumbnails import jpeg

    home, folder = indexed
    image = tmp_path / "frame.jpg"
    image.write_bytes(jpeg(next(iter(sample_frames(folder / "c.mp4", fps=1, size=96, start=3.0)))[1]))
    client = TestClient(create_app(home), base_url=LOCAL)
    api = client.post("/api/search?k=4", content=image.read_bytes(), headers={"content-type": "image/jpeg"})
    assert api.status_code == 200, api.text
    assert api.json() == run_json("query", "--image", str(image), "-k", "4", "--index", str(home), "--device", "cpu")
    with_words = client.post("/api/search?q=gray&k=4", content=image.read_bytes())
    assert with_words.json() == run_json("query", "gray", "--image", str(image), "-k", "4", "--index", str(home),
                                         "--device", "cpu")
    monkeypatch.setattr(serve, "MAX_K", 2)
    assert len(client.get("/api/search?q=gray&k=50").json()["hits"]) == 2
    assert len(client.get("/api/search?q=gray&k=5").json()["hits"]) == 2
    strip = client.get(f"/api/strip/{api.json()['hits'][0]['moment_id']}")
    assert strip.status_code == 200 and strip.headers["content-type"] == "image/jpeg"
    from vidsearch.frames import read_image

    (tmp_path / "strip.jpg").write_bytes(strip.content)
    assert read_image(tmp_path / "strip.jpg", size=32).std() > 0  # a real picture, decodable


class Server:
    """`vidsearch serve` as a subprocess on a free port; `url` once it printed it."""

    def __init__(self, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen([str(VIDSEARCH), "serve", "--port", "0", "--device", "cpu", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self.lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"serve exited {self.proc.wait()}: {self.proc.stderr.read()}")
            self.lines.append(line.strip())
            if line.startswith("serving "):
                self.url = line.split(" at ")[1].strip()
                break
        else:
            raise AssertionError("serve printed no URL")

    def more_lines(self, count: int) -> list[str]:
        return [self.proc.stdout.readline().strip() for _ in range(count)]

    def get(self, path: str, headers: dict | None = None, base: str | None = None) -> tuple[int, dict | str]:
        request = urllib.request.Request((base or self.url).rstrip("/") + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = response.read()
                return response.status, json.loads(body) if "json" in response.headers["content-type"] else body
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.mark.slow
def test_an_index_run_while_serving_is_picked_up_by_the_next_query(indexed, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(indexed[0], home)
    new = write_video(tmp_path / "new" / "late arrival.mp4", seconds=6, fps=5, size=(96, 64))
    server = Server("--index", str(home))
    try:
        status, before = server.get("/api/search?q=square&path=late*")
        assert status == 200 and before["hits"] == []
        videos_before = server.get("/api/status")[1]["indexed"]
        problems, answers, done = [], [], threading.Event()

        def search_meanwhile():  # every answer while `index` writes is a whole one: known videos, playable ids
            while not done.is_set():
                code, body = server.get("/api/search?q=gray+square&k=20")
                answers.append(body)
                if code != 200:
                    problems.append((code, body))
                    continue
                for hit in body["hits"]:
                    if not (Path(hit["path"]).is_file() and server.get(f"/api/videos/{hit['moment_id'].split('-')[0]}")[0] == 200):
                        problems.append(hit)

        reader = threading.Thread(target=search_meanwhile)
        reader.start()
        try:
            run_cli("index", str(new.parent), "--index", str(home))  # the index's own model (tiny)
        finally:
            done.set()
            reader.join()
        assert not problems, problems[:3]
        assert answers
        status, after = server.get("/api/search?q=square&path=late*")
        assert status == 200 and after["hits"] and {h["path"] for h in after["hits"]} == {str(new)}
        assert after == run_json("query", "square", "--path", "late*", "--index", str(home), "--device", "cpu")
        assert server.get("/api/status")[1]["indexed"] == videos_before + 1
        moment = after["hits"][0]["moment_id"]
        assert server.get(f"/media/{moment.split('-')[0]}")[0] == 200
    finally:
        assert server.stop() == 130  # Ctrl-C, as for every command


@pytest.mark.slow
def test_off_loopback_the_cli_generates_a_token_and_requires_it(indexed):
    server = Server("--index", str(indexed[0]), "--host", "0.0.0.0")
    try:
        login, token_line = server.more_lines(2)
        assert login.startswith("open http://") and "?login=" in login
        token = token_line.split()[1]
        port = server.url.rsplit(":", 1)[1].strip("/")
        base = f"http://127.0.0.1:{port}"
        assert server.get("/api/status", base=base)[0] == 401
        assert server.get("/api/status", {"Authorization": "Bearer wrong-token-of-some-length"}, base=base)[0] == 401
        status, body = server.get("/api/status", {"Authorization": f"Bearer {token}"}, base=base)
        assert status == 200 and body["indexed"] == 4
    finally:
        server.stop()
    short = run_cli("serve", "--index", str(indexed[0]), "--token", "short", check=2)
    assert "at least 16 characters" in short.stderr


def test_served_connections_send_without_waiting_for_acks(monkeypatch):
    """Nagle's algorithm held each response's body for the delayed ACK of its headers (40 ms a kept-alive request):
    the server's side of a connection must have TCP_NODELAY."""
    import socket

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

    ports = []
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # uvicorn's handlers belong to the main thread
    threading.Thread(target=serve.run, args=(app,), kwargs={"host": "127.0.0.1", "port": 0, "ready": ports.append},
                     daemon=True).start()
    deadline = time.monotonic() + 30
    while not ports and time.monotonic() < deadline:
        time.sleep(0.02)
    with socket.create_connection(("127.0.0.1", ports[0])) as client:
        client.sendall(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        answer = b""
        while not answer.endswith(b"ok"):
            answer += client.recv(4096)
        served = []
        for fd in map(int, os.listdir("/proc/self/fd")):
            try:
                sock = socket.socket(fileno=os.dup(fd))
            except OSError:  # not a socket
                continue
            with sock:
                if sock.family != socket.AF_INET:
                    continue
                try:
                    if sock.getsockname()[1] == ports[0] and sock.getpeername() == client.getsockname():
                        served.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                except OSError:  # a listening or unconnected socket
                    pass
    assert served and all(served), served
