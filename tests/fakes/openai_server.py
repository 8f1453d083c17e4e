"""A fake OpenAI-compatible server for the openai provider's failure modes.

It speaks ``POST /v1/images/generations`` (JSON), ``POST /v1/images/edits``
(multipart) and ``POST /v1/chat/completions``, and serves the files of its ``url``
answers under ``/files/``. By default an image request gets a small PNG (not the
size asked for, so a test sees the real size recorded) as ``b64_json``, and a chat
request ``"<last user message>, enhanced"``. ``queue()`` scripts the next answers:
an error status, a hang, no data, bad base64, bytes that are no image, a ``url``,
a body that is not JSON, a custom text.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

SMALL = (96, 64)  # what the fake draws by default, whatever size is asked


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    json: dict[str, Any] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, str, bytes]] = field(default_factory=list)  # (field, type, bytes)

    @property
    def route(self) -> str:
        return self.path.split("?")[0].rsplit("/", 1)[-1]

    @property
    def fields(self) -> dict[str, Any]:
        """The request's parameters, JSON or multipart alike."""
        return self.json or dict(self.form)


@dataclass
class Answer:
    """One scripted answer: ``kind`` is image, url, error, hang, no_data, bad_base64,
    not_image, not_json or text."""

    kind: str
    status: int = 200
    text: str = ""
    code: str | None = None
    delay: float = 0.0
    image: bytes | None = None


def png(size: tuple[int, int] = SMALL, color: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def _multipart(content_type: str, raw: bytes) -> EmailMessage:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=policy.default).parsebytes(head + raw)
    assert isinstance(message, EmailMessage)
    return message


class FakeOpenAi:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.files: dict[str, bytes] = {}
        self._script: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> FakeOpenAi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def queue(self, *answers: Answer) -> None:
        with self._lock:
            self._script.extend(answers)

    def image_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.route in ("generations", "edits")]

    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.route == "completions"]

    def _next(self, recorded: Recorded) -> Answer:
        with self._lock:
            self.requests.append(recorded)
            if self._script:
                return self._script.popleft()
        return Answer("text" if recorded.route == "completions" else "image")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                data = fake.files.get(self.path.split("?")[0].removeprefix("/files/"))
                if data is None:
                    self._json(404, {"error": {"message": "no such file"}})
                    return
                self._send(200, data, "image/png")

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                path = self.path.split("?")[0]
                if path not in ("/v1/images/generations", "/v1/images/edits",
                                "/v1/chat/completions"):  # fmt: skip
                    self._json(404, {"error": {"message": f"no route {path}"}})
                    return
                recorded = Recorded(path, {k.lower(): v for k, v in self.headers.items()})
                content_type = self.headers.get("content-type") or ""
                if content_type.startswith("multipart/form-data"):
                    for part in _multipart(content_type, raw).iter_parts():
                        name = part.get_param("name", header="content-disposition")
                        payload = part.get_payload(decode=True)
                        assert isinstance(name, str)
                        assert isinstance(payload, bytes)
                        if part.get_filename() is None:
                            recorded.form[name] = payload.decode()
                        else:
                            recorded.files.append((name, part.get_content_type(), payload))
                else:
                    recorded.json = json.loads(raw or b"{}")
                self._answer(recorded, fake._next(recorded))

            def _answer(self, recorded: Recorded, answer: Answer) -> None:
                if answer.delay:
                    time.sleep(answer.delay)
                if answer.kind == "hang":
                    return  # the delay elapsed; close without answering
                if answer.kind == "error":
                    error = {"message": answer.text or "scripted failure", "type": "server_error",
                             "param": None, "code": answer.code}  # fmt: skip
                    self._json(answer.status, {"error": error})
                    return
                if answer.kind == "not_json":
                    self._send(200, b"<html>not an API</html>", "text/html")
                    return
                if recorded.route == "completions":
                    messages = recorded.json.get("messages", [])
                    users = [m["content"] for m in messages if m.get("role") == "user"]
                    text = answer.text or f"{users[-1] if users else ''}, enhanced"
                    message = {"role": "assistant", "content": text}
                    self._json(200, {"id": "chat-1", "object": "chat.completion",
                                     "created": int(time.time()), "model": recorded.json["model"],
                                     "choices": [{"index": 0, "message": message,
                                                  "finish_reason": "stop"}]})  # fmt: skip
                    return
                self._json(200, {"created": int(time.time()), "data": self._items(answer)})

            def _items(self, answer: Answer) -> list[dict[str, Any]]:
                data = answer.image or png()
                if answer.kind == "no_data":
                    return []
                if answer.kind == "bad_base64":
                    return [{"b64_json": "@@ not base64 @@"}]
                if answer.kind == "not_image":
                    return [{"b64_json": base64.b64encode(b"plain text, no image").decode()}]
                if answer.kind == "url":
                    name = f"img-{len(fake.files)}.png"
                    fake.files[name] = data
                    return [{"url": answer.text or f"{fake.url}/files/{name}"}]
                return [{"b64_json": base64.b64encode(data).decode()}]

            def _json(self, status: int, body: dict[str, Any]) -> None:
                self._send(status, json.dumps(body).encode(), "application/json")

            def _send(self, status: int, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
