"""``server.access_log``: one line per request from the real ``serve`` process.

A real ``banatie-local serve`` (once in one process, once with two workers) runs with
the access log on and 127.0.0.1 as its trusted proxy. The module makes its requests,
stops the server, and then reads what it wrote: one line per request with the client
address, method, path and query, status, body bytes and duration, and no key.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from dataclasses import dataclass, field

import httpx
import pytest

from tests.e2e.test_serve_subprocess import (
    KEY_IN_TEXT,
    Server,
    assert_no_traceback,
    run_command,
)
from tests.helpers import free_port

pytestmark = pytest.mark.slow

LINE = re.compile(
    r" INFO sanic\.access: (?P<client>\S+) \"(?P<method>[A-Z]+) (?P<target>\S+)\" "
    r"(?P<status>\d{3}) (?P<bytes>\d+|-) (?P<ms>\d+\.\d)ms$"
)
LIVE = "/cdn/default/default/live/access?prompt=a+red+bike&aspectRatio=16:9"
# a second loopback address: a peer that is not a trusted proxy
UNTRUSTED_PEER = "127.0.0.2"


@dataclass(frozen=True)
class Access:
    client: str
    method: str
    target: str
    status: int
    size: str
    ms: float


@dataclass
class Run:
    """What the module asked, what it got, and the log the server wrote."""

    keys: tuple[str, str]
    responses: dict[str, httpx.Response] = field(default_factory=dict)
    lines: list[Access] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""

    def line(self, method: str, target: str) -> Access:
        found = [a for a in self.lines if (a.method, a.target) == (method, target)]
        assert len(found) == 1, (method, target, self.stderr)
        return found[0]


def _requests(url: str, project_key: str, run: Run) -> None:
    got = run.responses
    with httpx.Client(base_url=url, timeout=30) as client:
        got["live"] = client.get(LIVE)
        got["live again"] = client.get(LIVE)
        image_id = got["live"].headers["x-image-id"]
        img = f"/cdn/default/default/img/{image_id}"
        got["head"] = client.head(img)
        got["304"] = client.get(img, headers={"If-None-Match": got["live"].headers["etag"]})
        got["project"] = client.get("/api/v1/project", headers={"X-API-Key": project_key})
        got["bad key"] = client.get("/api/v1/project", headers={"X-API-Key": "bnt_" + "0" * 64})
        got["404"] = client.get("/nothing/here?x=1")
        got["forwarded"] = client.get(
            "/health?via=proxy", headers={"X-Forwarded-For": "198.51.100.9, 203.0.113.7"}
        )
        # a key put in the URL by mistake
        got["key in url"] = client.get(f"/health?apiKey={project_key}&n=1")
    spoofing = httpx.HTTPTransport(local_address=UNTRUSTED_PEER)
    with httpx.Client(base_url=url, timeout=30, transport=spoofing) as client:
        got["spoofed"] = client.get(
            "/health?via=untrusted", headers={"X-Forwarded-For": "203.0.113.66"}
        )


@pytest.fixture(scope="module", params=[1, 2], ids=["one-process", "two-workers"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("access-log")
    data = str(root / "data")
    python = [sys.executable, "-m", "banatie_local"]
    # keys made before serve, so that serve itself never prints one
    init = run_command(python, "init", "--json", "--data-dir", data, cwd=root)
    assert init.returncode == 0, init.stderr
    made = json.loads(init.stdout)
    port = free_port()
    config = root / "banatie.toml"
    config.write_text(
        '[server]\naccess_log = true\ntrusted_proxies = ["127.0.0.1"]\n'
        '[log]\nlevel = "warning"\n',  # access lines are written whatever the level
        encoding="utf-8",
    )
    args = ["serve", "--port", str(port), "--data-dir", data, "--config", str(config)]
    server = Server([*args, "--workers", str(request.param)], port, root)
    result = Run(keys=(made["masterKey"], made["projectKey"]))
    try:
        server.wait_healthy()
        _requests(server.url, made["projectKey"], result)
        assert server.stop(signal.SIGTERM) == 0, server.stderr
    finally:
        server.kill()
    result.stdout, result.stderr = server.stdout, server.stderr
    for text in server.stderr.splitlines():
        if " sanic.access: " in text:
            match = LINE.search(text)
            assert match, text
            result.lines.append(
                Access(
                    client=match["client"],
                    method=match["method"],
                    target=match["target"],
                    status=int(match["status"]),
                    size=match["bytes"],
                    ms=float(match["ms"]),
                )
            )
    return result


def test_one_line_per_request(run: Run) -> None:
    """Every request of the module has exactly one line (the start-up health polls aside)."""
    ours = [a for a in run.lines if (a.method, a.target) != ("GET", "/health")]
    assert len(ours) == len(run.responses), run.stderr
    assert_no_traceback(run.stdout, run.stderr)


def test_live_url_lines_show_the_query_status_bytes_and_duration(run: Run) -> None:
    first, again = run.responses["live"], run.responses["live again"]
    assert first.status_code == again.status_code == 200
    assert again.headers["x-cache-status"] == "HIT"
    lines = [a for a in run.lines if a.target == LIVE]
    assert len(lines) == 2, run.stderr
    for line in lines:
        assert (line.client, line.method, line.status) == ("127.0.0.1", "GET", 200)
        assert line.size == str(len(first.content))
        assert line.ms >= 0


def test_head_and_304_lines_have_no_body(run: Run) -> None:
    head, not_modified = run.responses["head"], run.responses["304"]
    assert (head.status_code, not_modified.status_code) == (200, 304)
    img = str(head.request.url.path)
    assert run.line("HEAD", img).status == 200
    assert run.line("HEAD", img).size == "0"
    assert run.line("GET", img).status == 304
    assert run.line("GET", img).size == "0"


def test_errors_are_logged(run: Run) -> None:
    missing = run.line("GET", "/nothing/here?x=1")
    assert (missing.status, missing.client) == (404, "127.0.0.1")
    assert missing.size == run.responses["404"].headers["content-length"]
    statuses = sorted(a.status for a in run.lines if a.target == "/api/v1/project")
    assert statuses == [200, 401]


def test_client_is_the_forwarded_address_only_behind_a_trusted_proxy(run: Run) -> None:
    assert run.line("GET", "/health?via=proxy").client == "203.0.113.7"
    # the same header from a peer that is no trusted proxy names the peer
    assert run.line("GET", "/health?via=untrusted").client == UNTRUSTED_PEER


def test_no_key_is_ever_written(run: Run) -> None:
    assert run.responses["project"].status_code == 200
    assert run.responses["bad key"].status_code == 401
    output = run.stdout + run.stderr
    for key in run.keys:
        assert key not in output
    assert not KEY_IN_TEXT.search(output)
    assert run.line("GET", "/health?apiKey=[redacted]&n=1").status == 200
    assert "X-API-Key" not in run.stderr
