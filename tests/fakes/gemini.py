"""A fake Gemini HTTP server speaking the ``generateContent`` wire format.

The real google-genai SDK talks to it (``HttpOptions(base_url=...)``), so tests see
exactly what the SDK sends. By default it answers image requests with a PNG at the
requested aspect ratio and text requests with ``"<prompt>, enhanced"``; ``queue()``
scripts the next answers (errors, no image, a hang, a blocked prompt, custom text).
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

PATH_RE = re.compile(r"^/(v1|v1beta)/models/([^/:]+):generateContent$")
RATIO_SIZES = {"1:1": (64, 64), "16:9": (112, 63), "9:16": (63, 112), "3:2": (96, 64),
               "2:3": (64, 96), "4:3": (84, 63), "3:4": (63, 84), "21:9": (126, 54)}  # fmt: skip


STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    429: "RESOURCE_EXHAUSTED",
}


@dataclass
class Recorded:
    path: str
    version: str
    model: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def parts(self) -> list[dict[str, Any]]:
        return [p for c in self.body.get("contents", []) for p in c.get("parts", [])]

    @property
    def texts(self) -> list[str]:
        return [p["text"] for p in self.parts if "text" in p]

    @property
    def inline_images(self) -> list[tuple[str, bytes]]:
        found = []
        for part in self.parts:
            inline = part.get("inlineData") or part.get("inline_data")
            if inline:
                mime = inline.get("mimeType") or inline.get("mime_type")
                found.append((mime, base64.urlsafe_b64decode(inline["data"])))
        return found

    @property
    def generation_config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.body.get("generationConfig", {})
        return config

    @property
    def wants_image(self) -> bool:
        return "IMAGE" in self.generation_config.get("responseModalities", [])


@dataclass
class Answer:
    """One scripted answer: ``kind`` is image, text, error, no_image, blocked or hang."""

    kind: str
    status: int = 200
    text: str = ""
    delay: float = 0.0
    image: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def png_for_ratio(ratio: str, color: tuple[int, int, int] = (30, 120, 220)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", RATIO_SIZES.get(ratio, (64, 64)), color).save(out, format="PNG")
    return out.getvalue()


class FakeGemini:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FakeGemini:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def queue(self, *answers: Answer) -> None:
        with self._lock:
            self._script.extend(answers)

    def image_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.wants_image]

    def text_requests(self) -> list[Recorded]:
        return [r for r in self.requests if not r.wants_image]

    def _next(self, recorded: Recorded) -> Answer:
        with self._lock:
            self.requests.append(recorded)
            if self._script:
                return self._script.popleft()
        return Answer("image" if recorded.wants_image else "text")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                match = PATH_RE.match(self.path.split("?")[0])
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if not match:
                    self._send(404, {"error": {"code": 404, "message": "not found"}})
                    return
                recorded = Recorded(
                    path=self.path,
                    version=match.group(1),
                    model=match.group(2),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=json.loads(raw or b"{}"),
                )
                self._answer(recorded, fake._next(recorded))

            def _answer(self, recorded: Recorded, answer: Answer) -> None:
                if answer.delay:
                    time.sleep(answer.delay)
                if answer.kind == "hang":
                    return  # the delay elapsed; close without answering
                if answer.kind == "error":
                    status_names = STATUS_NAMES
                    self._send(answer.status, {"error": {
                        "code": answer.status,
                        "message": answer.text or "scripted failure",
                        "status": status_names.get(answer.status, "INTERNAL"),
                    }})  # fmt: skip
                    return
                if answer.kind == "blocked":
                    self._send(200, {"promptFeedback": {"blockReason": "SAFETY"}, **answer.extra})
                    return
                if answer.kind == "no_image":
                    parts = [{"text": answer.text or "I cannot draw that."}]
                elif answer.kind == "text" or not recorded.wants_image:
                    prompt = recorded.texts[-1] if recorded.texts else ""
                    parts = [{"text": answer.text or f"{prompt}, enhanced"}]
                else:
                    ratio = recorded.generation_config.get("imageConfig", {}).get("aspectRatio")
                    data = answer.image or png_for_ratio(ratio or "1:1")
                    parts = [{"inlineData": {"mimeType": "image/png",
                                             "data": base64.b64encode(data).decode()}}]  # fmt: skip
                self._send(200, {"candidates": [
                    {"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}
                ]})  # fmt: skip

            def _send(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
