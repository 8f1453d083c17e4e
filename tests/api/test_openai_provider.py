"""The openai provider (API.md §1.4, §1.5, §2) through the real ``openai`` SDK.

Its model server is real: a second banatie-local, offline, run as a subprocess (the
database models bind one database per process), whose OpenAI door (API.md §11)
answers. What reached it is read back from its own API (``meta.openai``). The
failure modes come from a small fake server (``tests/fakes/openai_server.py``).
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image as PILImage
from prometheus_client.parser import text_string_to_metric_families

from banatie_local.config import ConfigError, GenerationSettings, load_settings, settings_table
from banatie_local.constants import ASPECT_RATIOS
from banatie_local.providers import create_provider
from banatie_local.providers.enhance import INSTRUCTION, TEMPLATE_STYLES, template_rewrite
from banatie_local.providers.openai import OpenAiProvider, nearest_size, server_label
from tests.conftest import Running
from tests.fakes.openai_server import Answer, FakeOpenAi, png
from tests.helpers import free_port, make_settings, stop_processes, wait_until_serving
from tests.imagedata import jpeg_bytes, png_bytes

KEY = "sk-test-key-0123456789abcdef"
MODEL = "image-model-under-test"
GENERATIONS = "/api/v1/generations"
UPLOAD = "/api/v1/images/upload"


def clean_env() -> dict[str, str]:
    """This process's environment without appliance settings or provider keys."""
    ours = ("BANATIE_", "GEMINI_", "OPENAI_")
    return {k: v for k, v in os.environ.items() if not k.startswith(ours)}


def cli(data: Path, *args: str, env: dict[str, str]) -> dict[str, Any]:
    """``banatie-local --data-dir DATA ARGS --json`` as a process; its JSON output."""
    done = subprocess.run(
        [sys.executable, "-m", "banatie_local", "--data-dir", str(data), *args, "--json"],
        capture_output=True, text=True, env=env, cwd=data.parent, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


@dataclass
class Served:
    """A ``banatie-local serve`` process with its keys."""

    url: str
    master_key: str
    project_key: str
    proc: subprocess.Popen[str]

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-API-Key": self.project_key, **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def generation_for(self, prompt: str) -> dict[str, Any]:
        """The one generation this server made for ``prompt``, references expanded."""
        listed = self.call("GET", GENERATIONS, params={"limit": 100})
        assert listed.status_code == 200, listed.text
        [found] = [g for g in listed.json()["data"] if g["prompt"] == prompt]
        shown = self.call("GET", f"{GENERATIONS}/{found['id']}")
        assert shown.status_code == 200, shown.text
        data: dict[str, Any] = shown.json()["data"]
        return data


@contextmanager
def serve(root: Path, name: str, env: dict[str, str]) -> Iterator[Served]:
    """Initialise a data directory, serve it on a free port, stop it afterwards."""
    data = root / name
    data.parent.mkdir(parents=True, exist_ok=True)
    keys = cli(data, "init", env=env)
    port = free_port()
    with (root / f"{name}.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "banatie_local", "--data-dir", str(data), "serve", "--port",
             str(port)],
            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_serving(proc, url)
            yield Served(url, keys["masterKey"], keys["projectKey"], proc)
        finally:
            stop_processes([proc])


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A second banatie-local, offline: the OpenAI-compatible model server."""
    env = {**clean_env(), "BANATIE_GENERATION_PROVIDER": "offline"}
    with serve(tmp_path_factory.mktemp("model"), "model-data", env) as served:
        yield served


@pytest.fixture
def on_model(start_server: Callable[..., Running], model_server: Served) -> Callable[..., Running]:
    """Start an appliance on the openai provider pointed at the model server."""

    def start(**overrides: Any) -> Running:
        return start_server(
            **{
                "generation__provider": "openai",
                "generation__openai_base_url": model_server.base_url,
                "generation__openai_api_key": model_server.project_key,
                "generation__openai_model": MODEL,
                "generation__timeout_seconds": 60,
                "generation__max_retries": 0,
                **overrides,
            }
        )

    return start


@pytest.fixture
def fake() -> Iterator[FakeOpenAi]:
    server = FakeOpenAi().start()
    yield server
    server.stop()


@pytest.fixture
def on_fake(start_server: Callable[..., Running], fake: FakeOpenAi) -> Callable[..., Running]:
    """Start an appliance on the openai provider pointed at the fake server."""

    def start(**overrides: Any) -> Running:
        return start_server(
            **{
                "generation__provider": "openai",
                "generation__openai_base_url": fake.base_url,
                "generation__openai_api_key": KEY,
                "generation__openai_model": MODEL,
                "generation__timeout_seconds": 1,
                "generation__max_retries": 0,
                "generation__retry_backoff_seconds": 0.01,
                **overrides,
            }
        )

    return start


def created(running: Running, **body: Any) -> dict[str, Any]:
    """POST a generation; it answers 201 with the record, success or failed."""
    response = running.project("POST", GENERATIONS, json={"prompt": "a cat", **body})
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def size_of(data: bytes) -> tuple[str, tuple[int, int]]:
    with PILImage.open(io.BytesIO(data)) as image:
        return str(image.format), image.size


def output_bytes(running: Running, generation: dict[str, Any]) -> bytes:
    path = urlsplit(generation["outputImage"]["storageUrl"]).path  # the URL names port 3000
    response = running.client.get(path)
    assert response.status_code == 200, response.text
    return response.content


def upload(running: Running, data: bytes, content_type: str) -> str:
    files = {"file": ("ref", data, content_type)}
    response = running.project("POST", UPLOAD, files=files)
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


# ================================================= against a real model server


def test_a_prompt_is_images_generate_on_the_model_server(
    on_model: Callable[..., Running], model_server: Served
) -> None:
    running = on_model()
    generation = created(running, prompt="a lighthouse at dusk", aspectRatio="16:9")

    assert generation["status"] == "success", generation["errorMessage"]
    assert generation["meta"]["provider"] == "openai"
    assert generation["meta"]["model"] == MODEL
    # no text model: the offline rewrite
    assert generation["prompt"] == template_rewrite("a lighthouse at dusk", "general")
    assert generation["originalPrompt"] == "a lighthouse at dusk"
    # 16:9 asks for the nearest size the server takes; the real size is recorded
    image = generation["outputImage"]
    assert (image["width"], image["height"]) == (1536, 1024)
    assert image["mimeType"] == "image/png"
    assert size_of(output_bytes(running, generation)) == ("PNG", (1536, 1024))

    theirs = model_server.generation_for(generation["prompt"])
    assert theirs["meta"]["openai"]["route"] == "generations"
    assert theirs["meta"]["openai"]["model"] == MODEL
    assert theirs["meta"]["openai"]["size"] == "1536x1024"
    assert theirs["referenceImages"] == []
    assert theirs["meta"]["provider"] == "offline"


def test_references_are_images_edit_on_the_model_server(
    on_model: Callable[..., Running], model_server: Served
) -> None:
    running = on_model()
    refs = [upload(running, png_bytes(40, 30), "image/png"),
            upload(running, jpeg_bytes(20, 24), "image/jpeg")]  # fmt: skip
    generation = created(
        running, prompt="a portrait in these colours", aspectRatio="2:3",
        referenceImages=refs, autoEnhance=False,
    )  # fmt: skip

    assert generation["status"] == "success", generation["errorMessage"]
    image = generation["outputImage"]
    assert (image["width"], image["height"]) == (1024, 1536)
    theirs = model_server.generation_for("a portrait in these colours")
    assert theirs["meta"]["openai"]["route"] == "edits"
    assert theirs["meta"]["openai"]["size"] == "1024x1536"
    sent = [(r["mimeType"], r["width"], r["height"]) for r in theirs["referenceImages"]]
    assert sent == [("image/png", 40, 30), ("image/jpeg", 20, 24)]


def test_the_live_url_draws_through_the_model_server(
    on_model: Callable[..., Running], model_server: Served
) -> None:
    running = on_model()
    response = running.client.get(
        "/cdn/default/default/live/x", params={"prompt": "a red fox in snow"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert size_of(response.content) == ("PNG", (1536, 1024))  # live: 16:9 by default

    [generation] = running.project("GET", GENERATIONS).json()["data"]
    assert generation["meta"]["provider"] == "openai"
    assert generation["meta"]["model"] == MODEL
    theirs = model_server.generation_for(generation["prompt"])
    assert theirs["meta"]["openai"]["route"] == "generations"


def test_a_refusal_is_recorded_with_the_status_and_the_servers_message(
    on_model: Callable[..., Running], model_server: Served
) -> None:
    """Our door refuses a size off its ratios; the sizes setting makes us ask one."""
    running = on_model(generation__openai_sizes=["1000x300"])
    generation = created(running, aspectRatio="21:9", autoEnhance=False)

    assert generation["status"] == "failed"
    port = model_server.url.rsplit(":", 1)[1]
    assert generation["errorMessage"].startswith(
        f"the OpenAI-compatible server at 127.0.0.1:{port} rejected the request (HTTP 400): "
        "size 1000x300 is not within 2% of a supported ratio"
    )
    assert model_server.project_key not in generation["errorMessage"]
    assert generation["meta"]["provider"] == "openai"


def test_a_wrong_key_is_recorded_without_the_key(
    on_model: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "bnt_" + "0" * 64
    running = on_model(generation__openai_api_key=wrong)
    generation = created(running, autoEnhance=False)

    assert generation["status"] == "failed"
    assert generation["errorMessage"].endswith(
        "rejected the API key (HTTP 401; check generation.openai_api_key)."
    )
    assert wrong not in json.dumps(generation)
    assert wrong not in caplog.text


def test_health_info_and_models_name_the_openai_provider(
    on_model: Callable[..., Running],
) -> None:
    running = on_model(generation__provider="auto", server__metrics=True)
    assert running.client.get("/health").json()["provider"] == "openai"
    assert running.client.get("/api/info").json()["data"]["provider"] == "openai"
    models = running.project("GET", "/v1/models").json()["data"]
    assert [m["id"] for m in models] == [MODEL]

    assert created(running, autoEnhance=False)["status"] == "success"
    spend = [
        sample.value
        for family in text_string_to_metric_families(running.client.get("/metrics").text)
        for sample in family.samples
        if sample.name == "banatie_provider_spend_usd_total"
        and sample.labels == {"provider": "openai", "model": MODEL}
    ]
    assert spend == [pytest.approx(0.04)]


def test_gemini_wins_auto_when_both_keys_are_set(start_server: Callable[..., Running]) -> None:
    running = start_server(
        generation__gemini_api_key="gemini-key", generation__openai_api_key="openai-key"
    )
    assert running.client.get("/health").json()["provider"] == "gemini"
    assert running.client.get("/api/info").json()["data"]["provider"] == "gemini"


@pytest.mark.slow
def test_serve_with_OPENAI_API_KEY_picks_the_openai_provider(
    tmp_path: Path, model_server: Served
) -> None:
    """A real ``serve``: the plain OPENAI_API_KEY, no provider named, no Gemini key."""
    env = {**clean_env(), "OPENAI_API_KEY": model_server.project_key,
           "BANATIE_GENERATION_OPENAI_BASE_URL": model_server.base_url}  # fmt: skip
    with serve(tmp_path, "data", env) as appliance:
        assert httpx.get(f"{appliance.url}/health").json()["provider"] == "openai"
        answer = appliance.call(
            "POST", GENERATIONS, json={"prompt": "a kite", "autoEnhance": False}
        )
        generation = answer.json()["data"]
        assert generation["status"] == "success", generation["errorMessage"]
        assert generation["meta"] == {"provider": "openai", "model": "gpt-image-2"}
        theirs = model_server.generation_for("a kite")
        assert theirs["meta"]["openai"]["model"] == "gpt-image-2"


# ========================================================= against the fake


def test_the_sdk_request_carries_the_key_model_size_and_prompt(
    on_fake: Callable[..., Running], fake: FakeOpenAi
) -> None:
    running = on_fake(generation__openai_sizes=["1024x1024", "1792x1008"])
    generation = created(running, prompt="a blue whale", aspectRatio="16:9", autoEnhance=False)

    assert generation["status"] == "success", generation["errorMessage"]
    # the fake draws 96x64, whatever was asked: the real size is recorded
    image = generation["outputImage"]
    assert (image["width"], image["height"]) == (96, 64)
    [request] = fake.requests
    assert request.route == "generations"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.json == {"model": MODEL, "prompt": "a blue whale", "n": 1, "size": "1792x1008"}


def test_edits_send_the_references_as_image_array_files(
    on_fake: Callable[..., Running], fake: FakeOpenAi
) -> None:
    running = on_fake()
    refs = [png_bytes(10, 6, (1, 2, 3)), jpeg_bytes(7, 9)]
    ids = [upload(running, refs[0], "image/png"), upload(running, refs[1], "image/jpeg")]
    generation = created(running, prompt="p", referenceImages=ids, autoEnhance=False)

    assert generation["status"] == "success", generation["errorMessage"]
    [request] = fake.requests
    assert request.route == "edits"
    assert request.form == {"model": MODEL, "prompt": "p", "n": "1", "size": "1024x1024"}
    assert [(name, kind) for name, kind, _ in request.files] == [
        ("image[]", "image/png"), ("image[]", "image/jpeg")]  # fmt: skip
    assert [size_of(data)[1] for _, _, data in request.files] == [(10, 6), (7, 9)]


def test_a_429_is_retried_then_succeeds(
    on_fake: Callable[..., Running], fake: FakeOpenAi, caplog: pytest.LogCaptureFixture
) -> None:
    fake.queue(Answer("error", 429, "slow down"), Answer("error", 503, "busy"))
    running = on_fake(generation__max_retries=2)
    with caplog.at_level(logging.WARNING, logger="banatie_local.providers.openai"):
        generation = created(running, autoEnhance=False)

    assert generation["status"] == "success", generation["errorMessage"]
    assert len(fake.image_requests()) == 3
    assert [r.getMessage().split(" answered ")[1] for r in caplog.records] == [
        "429; retrying in 0.01 s", "503; retrying in 0.02 s"]  # fmt: skip


def test_retries_stop_at_max_retries(on_fake: Callable[..., Running], fake: FakeOpenAi) -> None:
    fake.queue(*[Answer("error", 429, "slow down")] * 3)
    generation = created(on_fake(generation__max_retries=1), autoEnhance=False)
    assert generation["status"] == "failed"
    assert generation["errorMessage"].endswith(
        "answered that the quota or rate limit is exceeded (HTTP 429; try again later): slow down"
    )
    assert len(fake.image_requests()) == 2


FAILURES = {
    "server error": (Answer("error", 500, f"upstream broke for {KEY}"),
                     "failed with a server error (HTTP 500): upstream broke for [redacted]"),
    "bad request": (Answer("error", 400, "Invalid size."),
                    "rejected the request (HTTP 400): Invalid size."),
    "moderation": (Answer("error", 400, "Your request was rejected.", code="moderation_blocked"),
                   "blocked the request (moderation_blocked): Your request was rejected."),
    "forbidden": (Answer("error", 403, "Your organization must be verified."),
                  "refused the request (HTTP 403): Your organization must be verified."),
    "wrong key": (Answer("error", 401, f"Incorrect API key provided: {KEY[:8]}****"),
                  "rejected the API key (HTTP 401; check generation.openai_api_key)."),
    "hang": (Answer("hang", delay=2.5), "did not answer within 1 seconds."),
    "closed": (Answer("hang"), "could not be reached (RemoteProtocolError)."),
    "no data": (Answer("no_data"), "answered without an image."),
    "bad base64": (Answer("bad_base64"), "answered with image data that is not valid base64."),
    "no image": (Answer("not_image"),
                 "answered with image data that is not a readable image."),
    "not json": (Answer("not_json"), "answered with something that is not an Images API answer."),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FAILURES))
def test_failures_are_recorded_in_error_message_without_the_key(
    on_fake: Callable[..., Running],
    fake: FakeOpenAi,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    answer, expected = FAILURES[case]
    fake.queue(answer)
    running = on_fake()
    response = running.project("POST", GENERATIONS, json={"prompt": "x", "autoEnhance": False})
    generation = response.json()["data"]

    assert generation["status"] == "failed"
    assert generation["errorMessage"] == f"{server_label(fake.url)} {expected}"
    assert generation["outputImageId"] is None
    assert generation["meta"] == {"provider": "openai"}
    assert KEY not in response.text
    assert KEY not in caplog.text
    for record in caplog.records:
        assert KEY not in (record.exc_text or "")


@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_a_url_answer_is_downloaded(
    on_fake: Callable[..., Running], fake: FakeOpenAi, where: str
) -> None:
    url = f"{fake.url}/files/img-0.png" if where == "absolute" else "/files/img-0.png"
    fake.queue(Answer("url", text=url, image=png((120, 80))))
    running = on_fake()
    generation = created(running, autoEnhance=False)

    assert generation["status"] == "success", generation["errorMessage"]
    image = generation["outputImage"]
    assert (image["width"], image["height"]) == (120, 80)
    assert size_of(output_bytes(running, generation)) == ("PNG", (120, 80))


def test_enhancement_goes_through_the_chat_model(
    on_fake: Callable[..., Running], fake: FakeOpenAi
) -> None:
    running = on_fake(generation__openai_text_model="chat-model-x")
    generation = created(running, prompt="a lighthouse", enhancementOptions={"template": "comic"})

    assert generation["status"] == "success", generation["errorMessage"]
    assert generation["prompt"] == "a lighthouse, enhanced"
    assert generation["originalPrompt"] == "a lighthouse"
    [chat] = fake.chat_requests()
    assert chat.headers["authorization"] == f"Bearer {KEY}"
    assert chat.json == {
        "model": "chat-model-x",
        "messages": [
            {"role": "system", "content": INSTRUCTION.format(style=TEMPLATE_STYLES["comic"])},
            {"role": "user", "content": "a lighthouse"},
        ],
    }
    [image] = fake.image_requests()
    assert image.json["prompt"] == "a lighthouse, enhanced"
    assert image.json["model"] == MODEL


def test_a_failed_enhancement_is_recorded_and_the_prompt_kept(
    on_fake: Callable[..., Running], fake: FakeOpenAi
) -> None:
    fake.queue(Answer("error", 500, "chat is down"))
    running = on_fake(generation__openai_text_model="chat-model-x")
    generation = created(running, prompt="a lighthouse")

    assert generation["status"] == "success", generation["errorMessage"]
    assert generation["prompt"] == "a lighthouse"
    assert generation["originalPrompt"] is None
    assert generation["meta"]["enhancementError"] == (
        f"{server_label(fake.url)} failed with a server error (HTTP 500): chat is down"
    )


def test_without_a_text_model_the_offline_rewrite_enhances(
    on_fake: Callable[..., Running], fake: FakeOpenAi
) -> None:
    running = on_fake()
    generation = created(running, prompt="a lighthouse", enhancementOptions={"template": "sticker"})

    assert generation["prompt"] == template_rewrite("a lighthouse", "sticker")
    assert fake.chat_requests() == []
    [image] = fake.image_requests()
    assert image.json["prompt"] == template_rewrite("a lighthouse", "sticker")


# ============================================================== settings, table


def test_the_default_sizes_and_the_nearest_for_each_ratio() -> None:
    sizes = GenerationSettings().openai_size_table
    assert sizes == ((1024, 1024), (1536, 1024), (1024, 1536))
    nearest = {ratio: nearest_size(ratio, sizes) for ratio in ASPECT_RATIOS}
    assert nearest == {
        "1:1": (1024, 1024),
        "16:9": (1536, 1024), "3:2": (1536, 1024), "4:3": (1536, 1024), "21:9": (1536, 1024),
        "9:16": (1024, 1536), "2:3": (1024, 1536), "3:4": (1024, 1536),
    }  # fmt: skip
    exact = tuple(ASPECT_RATIOS.values())
    assert all(nearest_size(r, exact) == size for r, size in ASPECT_RATIOS.items())


def load(tmp_path: Path, environ: dict[str, str], **values: Any) -> Any:
    overrides = {k.replace("__", "."): v for k, v in values.items()}
    return load_settings(data_dir=tmp_path / "data", overrides=overrides, environ=environ)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"OPENAI_API_KEY": "o"}, "openai"),
        ({"OPENAI_API_KEY": "o", "GEMINI_API_KEY": "g"}, "gemini"),
        ({"BANATIE_GENERATION_OPENAI_API_KEY": "o"}, "openai"),
        ({"OPENAI_API_KEY": ""}, "offline"),
        ({}, "offline"),
    ],
)
def test_auto_picks_gemini_then_openai_then_offline(
    tmp_path: Path, environ: dict[str, str], expected: str
) -> None:
    settings = load(tmp_path, environ)
    assert settings.provider_name == expected
    assert create_provider(settings).name == expected


def test_openai_api_key_comes_from_the_plain_variable_and_is_secret(tmp_path: Path) -> None:
    assert load(tmp_path, {"OPENAI_API_KEY": "plain"}).generation.openai_api_key == "plain"
    ours = {"OPENAI_API_KEY": "plain", "BANATIE_GENERATION_OPENAI_API_KEY": "ours"}
    assert load(tmp_path, ours).generation.openai_api_key == "ours"
    [spec] = [s for s in settings_table() if s.name == "generation.openai_api_key"]
    assert spec.secret


def test_explicit_openai_needs_no_key_for_a_local_server(tmp_path: Path) -> None:
    provider = create_provider(load(tmp_path, {}, generation__provider="openai"))
    assert isinstance(provider, OpenAiProvider)
    assert provider.image_model == "gpt-image-2"
    assert provider.label == "OpenAI"


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"generation__openai_sizes": ["1024"]}, "generation.openai_sizes"),
        ({"generation__openai_sizes": ["0x1024"]}, "generation.openai_sizes"),
        ({"generation__openai_sizes": []}, "generation.openai_sizes"),
        ({"generation__openai_base_url": "localhost:8080/v1"}, "generation.openai_base_url"),
    ],
)
def test_bad_openai_settings_stop_startup(
    tmp_path: Path, values: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load(tmp_path, {}, **values)


def test_the_server_label_never_holds_user_info_or_path() -> None:
    assert server_label("https://api.openai.com/v1") == "OpenAI"
    label = server_label("http://user:secret@models.lan:8080/v1?key=x")
    assert label == "the OpenAI-compatible server at models.lan:8080"


def test_sizes_are_read_loosely(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, generation__openai_sizes=["512X768", " 768x512 "])
    assert settings.generation.openai_size_table == ((512, 768), (768, 512))
