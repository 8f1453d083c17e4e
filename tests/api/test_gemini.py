"""The Gemini provider (API.md §1.4, §1.5, §2) through the real google-genai SDK,
talking to a fake Gemini server: what is sent, what is recorded, how failures end."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from banatie_local.config import Settings
from banatie_local.providers.base import GeneratedImage, ProviderError, ReferenceImage
from banatie_local.providers.enhance import TEMPLATE_STYLES
from banatie_local.providers.gemini import GeminiProvider
from tests.conftest import Running
from tests.fakes.gemini import RATIO_SIZES, Answer, FakeGemini, Recorded, png_for_ratio
from tests.helpers import free_port, make_settings
from tests.imagedata import jpeg_bytes, pixels, png_bytes

KEY = "test-key-123"
GENERATIONS = "/api/v1/generations"
UPLOAD = "/api/v1/images/upload"
IMAGE_MODEL = "gemini-2.5-flash-image"
TEXT_MODEL = "gemini-2.5-flash"


@pytest.fixture(scope="module")
def stopping() -> Iterator[list[threading.Thread]]:
    """Fake servers being stopped; each stop waits out a 0.5 s poll, so they run in
    parallel and are all joined when the module ends."""
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join(10)


@pytest.fixture
def fake(stopping: list[threading.Thread]) -> Iterator[FakeGemini]:
    """A started fake Gemini server, stopped after the test."""
    server = FakeGemini().start()
    yield server
    stopper = threading.Thread(target=server.stop, daemon=True)
    stopper.start()
    stopping.append(stopper)


def provider_settings(tmp_path: Path, base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "generation__gemini_api_key": KEY,
        "generation__gemini_base_url": base_url,
        "generation__retry_backoff_seconds": 0.01,
        "generation__timeout_seconds": 1,
        **overrides,
    }
    return make_settings(tmp_path / "data", **values)


Action = Callable[[GeminiProvider], Awaitable[Any]]


def run_provider(settings: Settings, action: Action) -> Any:
    """Run ``action`` on a new provider in a new event loop (the SDK's async client
    belongs to the loop that first uses it)."""

    async def scenario() -> Any:
        return await action(GeminiProvider(settings.generation))

    return asyncio.run(scenario())


def provider_error(settings: Settings, action: Action) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        run_provider(settings, action)
    return caught.value


def draw(
    prompt: str = "a cat", ratio: str = "1:1", refs: list[ReferenceImage] | None = None
) -> Action:
    """Generate ``prompt`` at ``ratio`` with ``refs``."""
    return lambda provider: provider.generate(prompt, ratio, refs or [])


@pytest.fixture
def gemini(start_server: Callable[..., Running], fake: FakeGemini) -> Callable[..., Running]:
    """Start an appliance wired to the fake Gemini; ``section__key`` overrides win."""

    def start(**overrides: Any) -> Running:
        values: dict[str, Any] = {
            "generation__provider": "gemini",
            "generation__gemini_api_key": KEY,
            "generation__gemini_base_url": fake.url,
            "generation__retry_backoff_seconds": 0.01,
            "generation__timeout_seconds": 1,
            "generation__max_retries": 2,
            **overrides,
        }
        return start_server(**values)

    return start


def create(running: Running, **body: Any) -> httpx.Response:
    return running.project("POST", GENERATIONS, json={"prompt": "a cat", **body})


def created(running: Running, **body: Any) -> dict[str, Any]:
    """POST a generation; it must answer 201 (success or failed record)."""
    response = create(running, **body)
    assert response.status_code == 201, response.text
    assert response.json()["success"] is True
    data: dict[str, Any] = response.json()["data"]
    return data


def failed(running: Running, **body: Any) -> dict[str, Any]:
    """POST a generation that must end failed; GET must show the same record."""
    generation = created(running, **body)
    assert generation["status"] == "failed", generation
    assert generation["outputImageId"] is None
    assert generation["outputImage"] is None
    assert generation["errorMessage"]
    shown = running.project("GET", f"{GENERATIONS}/{generation['id']}")
    assert shown.status_code == 200
    assert shown.json()["data"] == generation
    return generation


def sent_images(request: Recorded) -> list[tuple[str, bytes]]:
    """The inline images of a request, decoded from the SDK's URL-safe base64."""
    found = []
    for part in request.parts:
        inline = part.get("inlineData") or part.get("inline_data")
        if inline:
            mime = inline.get("mimeType") or inline.get("mime_type")
            found.append((mime, base64.urlsafe_b64decode(inline["data"])))
    return found


def upload(running: Running, data: bytes, content_type: str, **fields: str) -> dict[str, Any]:
    files = {"file": ("ref", data, content_type)}
    response = running.project("POST", UPLOAD, files=files, data=fields)
    assert response.status_code == 201, response.text
    image: dict[str, Any] = response.json()["data"]
    return image


# ============================================================== provider level


def test_provider_generate_sends_the_sdk_request(tmp_path: Path, fake: FakeGemini) -> None:
    """Image model, IMAGE modality, the ratio, references inline before the prompt."""
    refs = [
        ReferenceImage(png_bytes(10, 6, (1, 2, 3)), "image/png"),
        ReferenceImage(jpeg_bytes(7, 9), "image/jpeg"),
    ]
    settings = provider_settings(tmp_path, fake.url)
    result: GeneratedImage = run_provider(settings, draw("a red kite", "21:9", refs))

    assert (result.width, result.height) == RATIO_SIZES["21:9"]
    assert result.data == png_for_ratio("21:9")
    assert result.mime_type == "image/png"
    assert result.model == IMAGE_MODEL
    [request] = fake.requests
    assert request.model == IMAGE_MODEL
    assert request.path.endswith(f"/models/{IMAGE_MODEL}:generateContent")
    assert request.headers["x-goog-api-key"] == KEY
    assert request.generation_config["responseModalities"] == ["IMAGE"]
    assert request.generation_config["imageConfig"] == {"aspectRatio": "21:9"}
    assert sent_images(request) == [(r.mime_type, r.data) for r in refs]
    assert request.texts == ["a red kite"]
    kinds = [
        "inlineData" if ("inlineData" in p or "inline_data" in p) else "text" for p in request.parts
    ]
    assert kinds == ["inlineData", "inlineData", "text"]
    assert "systemInstruction" not in request.body


def test_provider_keeps_the_models_own_image_size(tmp_path: Path, fake: FakeGemini) -> None:
    """A real model's output keeps its own size (§1.3), measured from the bytes."""
    fake.queue(Answer("image", image=png_bytes(300, 200)))
    result = run_provider(provider_settings(tmp_path, fake.url), draw(ratio="16:9"))
    assert (result.width, result.height) == (300, 200)


@pytest.mark.parametrize("template", list(TEMPLATE_STYLES))
def test_provider_enhance_uses_the_text_model_and_template(
    tmp_path: Path, fake: FakeGemini, template: str
) -> None:
    settings = provider_settings(tmp_path, fake.url)
    text = run_provider(settings, lambda p: p.enhance("a lighthouse", template))
    assert text == "a lighthouse, enhanced"
    [request] = fake.requests
    assert request.model == TEXT_MODEL
    assert request.headers["x-goog-api-key"] == KEY
    assert request.generation_config["responseModalities"] == ["TEXT"]
    assert "imageConfig" not in request.generation_config
    assert request.texts == ["a lighthouse"]
    instruction = " ".join(p["text"] for p in request.body["systemInstruction"]["parts"])
    assert TEMPLATE_STYLES[template] in instruction


def test_provider_models_are_configurable(tmp_path: Path, fake: FakeGemini) -> None:
    settings = provider_settings(
        tmp_path,
        fake.url,
        generation__image_model="my-image-model",
        generation__text_model="my-text-model",
    )

    async def both(provider: GeminiProvider) -> GeneratedImage:
        await provider.enhance("a cat", "general")
        return await provider.generate("a cat", "1:1", [])

    result = run_provider(settings, both)
    assert result.model == "my-image-model"
    assert [r.model for r in fake.requests] == ["my-text-model", "my-image-model"]
    assert fake.requests[1].path.endswith("/models/my-image-model:generateContent")


def test_provider_enhance_without_text_fails(tmp_path: Path, fake: FakeGemini) -> None:
    fake.queue(Answer("text", text="   "))
    error = provider_error(
        provider_settings(tmp_path, fake.url), lambda p: p.enhance("a cat", "general")
    )
    assert error.kind == "no_text"


def test_provider_retries_429_and_5xx_then_succeeds(tmp_path: Path, fake: FakeGemini) -> None:
    fake.queue(Answer("error", 429), Answer("error", 503))
    settings = provider_settings(tmp_path, fake.url, generation__max_retries=2)
    result = run_provider(settings, draw())
    assert result.model == IMAGE_MODEL
    assert len(fake.requests) == 3


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_provider_makes_exactly_one_plus_max_retries_attempts(
    tmp_path: Path, fake: FakeGemini, retries: int, caplog: pytest.LogCaptureFixture
) -> None:
    fake.queue(*[Answer("error", 500)] * 10)
    settings = provider_settings(tmp_path, fake.url, generation__max_retries=retries)
    with caplog.at_level(logging.WARNING, logger="banatie_local.providers.gemini"):
        error = provider_error(settings, draw())
    assert error.kind == "server"
    assert "server error" in error.message
    assert "500" in error.message
    assert len(fake.requests) == 1 + retries
    retry_logs = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retry_logs) == retries


def test_provider_backoff_doubles(tmp_path: Path, fake: FakeGemini) -> None:
    """Two retries with a 0.1 s first delay wait about 0.1 + 0.2 s."""
    fake.queue(Answer("error", 500), Answer("error", 500))
    settings = provider_settings(
        tmp_path, fake.url, generation__max_retries=2, generation__retry_backoff_seconds=0.1
    )
    started = time.monotonic()
    run_provider(settings, draw())
    assert 0.3 <= time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("answer", "kind", "words"),
    [
        (Answer("error", 401), "auth", "rejected the API key"),
        (Answer("error", 403), "auth", "rejected the API key"),
        (Answer("error", 400, text="bad aspect"), "request", "bad aspect"),
        (Answer("no_image"), "no_image", "without an image"),
        (Answer("image", image=b"not an image at all"), "no_image", "not a readable image"),
        (Answer("blocked"), "safety", "blocked"),
    ],
)
def test_provider_failures_are_not_retried(
    tmp_path: Path, fake: FakeGemini, answer: Answer, kind: str, words: str
) -> None:
    fake.queue(answer)
    error = provider_error(provider_settings(tmp_path, fake.url), draw())
    assert error.kind == kind
    assert words in error.message
    assert len(fake.requests) == 1


def test_provider_persistent_429_is_a_quota_error(tmp_path: Path, fake: FakeGemini) -> None:
    fake.queue(*[Answer("error", 429)] * 3)
    settings = provider_settings(tmp_path, fake.url, generation__max_retries=1)
    error = provider_error(settings, draw())
    assert error.kind == "quota"
    assert len(fake.requests) == 2


def test_provider_times_out(tmp_path: Path, fake: FakeGemini) -> None:
    fake.queue(Answer("hang", delay=2))
    started = time.monotonic()
    error = provider_error(provider_settings(tmp_path, fake.url), draw())
    assert error.kind == "timeout"
    assert "1 seconds" in error.message
    assert time.monotonic() - started < 1.9
    assert len(fake.requests) == 1


def test_provider_scrubs_the_key_from_error_details(tmp_path: Path, fake: FakeGemini) -> None:
    fake.queue(Answer("error", 400, text=f"API key {KEY} is not valid for this model"))
    error = provider_error(provider_settings(tmp_path, fake.url), draw())
    assert KEY not in error.message
    assert KEY not in str(error)
    assert "[redacted]" in error.message


@pytest.mark.parametrize("failure", ["unreachable", "dropped"])
def test_provider_network_failures_become_provider_errors(
    tmp_path: Path, fake: FakeGemini, failure: str
) -> None:
    if failure == "unreachable":
        base_url = f"http://127.0.0.1:{free_port()}"
    else:
        base_url = fake.url
        fake.queue(Answer("hang", delay=0.01))  # closes the connection without answering
    error = provider_error(provider_settings(tmp_path, base_url), draw())
    assert error.kind == "network"
    assert "could not be reached" in error.message


# ================================================================ API: provider


def test_health_and_info_report_gemini(gemini: Callable[..., Running]) -> None:
    running = gemini()
    assert running.client.get("/health").json()["provider"] == "gemini"
    assert running.client.get("/api/info").json()["data"]["provider"] == "gemini"


@pytest.mark.parametrize(
    ("provider", "key", "expected"),
    [("auto", KEY, "gemini"), ("auto", "", "offline"), ("offline", KEY, "offline")],
)
def test_provider_selection(
    start_server: Callable[..., Running], provider: str, key: str, expected: str
) -> None:
    running = start_server(generation__provider=provider, generation__gemini_api_key=key)
    assert running.client.get("/health").json()["provider"] == expected
    assert running.client.get("/api/info").json()["data"]["provider"] == expected


# ============================================================ API: the request


def test_generation_sends_enhancement_then_image_request(
    gemini: Callable[..., Running], fake: FakeGemini
) -> None:
    """autoEnhance + references: the text request first, then the image request with
    the enhanced prompt, the ratio and the references' exact bytes before the text."""
    running = gemini()
    ref_png = png_bytes(12, 7, (10, 20, 30))
    ref_jpeg = jpeg_bytes(9, 5)
    first = upload(running, ref_png, "image/png", alias="@ref")
    second = upload(running, ref_jpeg, "image/jpeg")

    generation = created(
        running,
        prompt="a paper boat on a pond",
        aspectRatio="16:9",
        referenceImages=["@ref", second["id"]],
        enhancementOptions={"template": "comic"},
    )

    assert [r.headers["x-goog-api-key"] for r in fake.requests] == [KEY, KEY]
    text, image = fake.requests
    assert text.model == TEXT_MODEL
    assert text.path.endswith(f"/models/{TEXT_MODEL}:generateContent")
    assert text.generation_config["responseModalities"] == ["TEXT"]
    assert text.texts == ["a paper boat on a pond"]
    assert sent_images(text) == []
    instruction = " ".join(p["text"] for p in text.body["systemInstruction"]["parts"])
    assert TEMPLATE_STYLES["comic"] in instruction

    enhanced = "a paper boat on a pond, enhanced"
    assert image.model == IMAGE_MODEL
    assert image.path.endswith(f"/models/{IMAGE_MODEL}:generateContent")
    assert image.generation_config["responseModalities"] == ["IMAGE"]
    assert image.generation_config["imageConfig"]["aspectRatio"] == "16:9"
    assert image.texts == [enhanced]
    assert sent_images(image) == [("image/png", ref_png), ("image/jpeg", ref_jpeg)]
    assert "text" in image.parts[-1]
    assert all("text" not in part for part in image.parts[:-1])

    assert generation["status"] == "success"
    assert generation["prompt"] == enhanced
    assert generation["originalPrompt"] == "a paper boat on a pond"
    assert generation["autoEnhance"] is True
    assert generation["aspectRatio"] == "16:9"
    assert generation["errorMessage"] is None
    assert generation["meta"]["provider"] == "gemini"
    assert generation["meta"]["model"] == IMAGE_MODEL
    assert "enhancementError" not in generation["meta"]
    assert [r["imageId"] for r in generation["referencedImages"]] == [first["id"], second["id"]]

    output = generation["outputImage"]
    returned = png_for_ratio("16:9")
    assert (output["width"], output["height"]) == RATIO_SIZES["16:9"] != (1792, 1008)
    assert output["mimeType"] == "image/png"
    cdn = running.client.get(f"/cdn/default/default/img/{output['id']}")
    assert cdn.status_code == 200
    # the model's pixels, in a file that now also says what made it (API.md §14)
    assert pixels(cdn.content) == pixels(returned)
    assert output["fileSize"] == len(cdn.content) > len(returned)
    assert output["fileHash"] == hashlib.sha256(cdn.content).hexdigest()


def test_output_records_the_real_size_of_the_model_image(
    gemini: Callable[..., Running], fake: FakeGemini
) -> None:
    running = gemini()
    fake.queue(
        Answer("text", text="a tall tower, dramatic"), Answer("image", image=png_bytes(333, 222))
    )
    generation = created(running, prompt="a tall tower", aspectRatio="9:16")
    assert generation["status"] == "success"
    assert generation["prompt"] == "a tall tower, dramatic"
    image = generation["outputImage"]
    assert (image["width"], image["height"]) == (333, 222)
    shown = running.project("GET", f"/api/v1/images/{image['id']}").json()["data"]
    assert (shown["width"], shown["height"]) == (333, 222)


def test_configured_models_are_used(gemini: Callable[..., Running], fake: FakeGemini) -> None:
    running = gemini(generation__image_model="img-model-x", generation__text_model="txt-model-y")
    generation = created(running)
    assert generation["status"] == "success"
    assert generation["meta"]["model"] == "img-model-x"
    assert [r.model for r in fake.requests] == ["txt-model-y", "img-model-x"]
    assert fake.requests[0].path.endswith("/models/txt-model-y:generateContent")
    assert fake.requests[1].path.endswith("/models/img-model-x:generateContent")


def test_auto_enhance_false_skips_the_text_model(
    gemini: Callable[..., Running], fake: FakeGemini
) -> None:
    running = gemini()
    generation = created(running, prompt="  a quiet harbour  ", autoEnhance=False)
    assert generation["status"] == "success"
    assert generation["prompt"] == "a quiet harbour"
    assert generation["originalPrompt"] is None
    assert generation["autoEnhance"] is False
    [request] = fake.requests
    assert request.wants_image
    assert request.texts == ["a quiet harbour"]
    assert request.generation_config["imageConfig"]["aspectRatio"] == "1:1"


def test_unchanged_enhancement_leaves_original_prompt_null(
    gemini: Callable[..., Running], fake: FakeGemini
) -> None:
    running = gemini()
    fake.queue(Answer("text", text="a cat"))
    generation = created(running, prompt="a cat")
    assert generation["status"] == "success"
    assert generation["prompt"] == "a cat"
    assert generation["originalPrompt"] is None


# ====================================================== API: enhancement errors


@pytest.mark.parametrize(
    ("answers", "words"),
    [
        ([Answer("error", 500)] * 3, "server error"),
        ([Answer("error", 400, text="bad request")], "bad request"),
        ([Answer("error", 401)], "rejected the API key"),
    ],
)
def test_enhancement_failure_falls_back_to_the_original_prompt(
    gemini: Callable[..., Running], fake: FakeGemini, answers: list[Answer], words: str
) -> None:
    running = gemini(generation__max_retries=2)
    fake.queue(*answers)
    generation = created(running, prompt="a windmill")
    assert generation["status"] == "success"
    assert generation["prompt"] == "a windmill"
    assert generation["originalPrompt"] is None
    assert words in generation["meta"]["enhancementError"]
    assert generation["meta"]["provider"] == "gemini"
    assert generation["meta"]["model"] == IMAGE_MODEL
    assert len(fake.text_requests()) == len(answers)
    [image] = fake.image_requests()
    assert image.texts == ["a windmill"]


def test_user_meta_is_kept_beside_system_meta(
    gemini: Callable[..., Running], fake: FakeGemini
) -> None:
    running = gemini()
    fake.queue(Answer("error", 400))
    generation = created(running, meta={"campaign": "spring", "provider": "spoofed"})
    assert generation["meta"]["campaign"] == "spring"
    assert generation["meta"]["provider"] == "gemini"
    assert "enhancementError" in generation["meta"]


# ============================================================ API: image errors


def test_429_then_success(gemini: Callable[..., Running], fake: FakeGemini) -> None:
    running = gemini(generation__max_retries=2)
    fake.queue(Answer("error", 429))
    generation = created(running, autoEnhance=False)
    assert generation["status"] == "success"
    assert generation["outputImage"] is not None
    assert len(fake.image_requests()) == 2


@pytest.mark.parametrize("retries", [0, 2])
def test_persistent_server_error_fails_after_every_retry(
    gemini: Callable[..., Running], fake: FakeGemini, retries: int
) -> None:
    running = gemini(generation__max_retries=retries)
    fake.queue(*[Answer("error", 500)] * 5)
    generation = failed(running, autoEnhance=False)
    assert "server error" in generation["errorMessage"]
    assert generation["meta"]["provider"] == "gemini"
    assert len(fake.image_requests()) == 1 + retries


def test_persistent_429_fails_as_quota(gemini: Callable[..., Running], fake: FakeGemini) -> None:
    running = gemini(generation__max_retries=1)
    fake.queue(*[Answer("error", 429)] * 2)
    generation = failed(running, autoEnhance=False)
    assert "rate limit" in generation["errorMessage"]
    assert len(fake.image_requests()) == 2


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (Answer("no_image"), "without an image"),
        (Answer("blocked"), "blocked"),
        (Answer("error", 401), "rejected the API key"),
        (Answer("error", 403), "rejected the API key"),
        (Answer("error", 400, text="unsupported ratio"), "unsupported ratio"),
    ],
)
def test_image_failures_give_a_failed_record(
    gemini: Callable[..., Running], fake: FakeGemini, answer: Answer, words: str
) -> None:
    running = gemini()
    fake.queue(answer)
    generation = failed(running, autoEnhance=False)
    assert words in generation["errorMessage"]
    assert len(fake.image_requests()) == 1


def test_blocked_prompt_mentions_safety(gemini: Callable[..., Running], fake: FakeGemini) -> None:
    running = gemini()
    fake.queue(Answer("blocked"))
    generation = failed(running, autoEnhance=False)
    assert "blocked" in generation["errorMessage"]
    assert "SAFETY" in generation["errorMessage"]


def test_failed_generation_is_listed_as_failed(
    gemini: Callable[..., Running], fake: FakeGemini
) -> None:
    running = gemini()
    fake.queue(Answer("no_image"))
    generation = failed(running, autoEnhance=False)
    listed = running.project("GET", GENERATIONS, params={"status": "failed"}).json()
    assert [g["id"] for g in listed["data"]] == [generation["id"]]
    assert listed["data"][0] == generation


def test_timeout_fails_and_the_server_stays_responsive(
    gemini: Callable[..., Running], fake: FakeGemini
) -> None:
    running = gemini(generation__timeout_seconds=1)
    fake.queue(Answer("hang", delay=2))
    outcome: dict[str, httpx.Response] = {}

    def post() -> None:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            outcome["response"] = client.post(
                GENERATIONS,
                json={"prompt": "a slow cat", "autoEnhance": False},
                headers={"X-API-Key": running.project_key or ""},
            )

    worker = threading.Thread(target=post)
    worker.start()
    deadline = time.monotonic() + 5
    while not fake.image_requests() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.image_requests(), "the image request never reached the fake"

    health = running.client.get("/health")
    assert health.status_code == 200
    assert health.json()["provider"] == "gemini"
    assert worker.is_alive()  # the generation is still waiting on Gemini

    worker.join(10)
    response = outcome["response"]
    assert response.status_code == 201, response.text
    generation = response.json()["data"]
    assert generation["status"] == "failed"
    assert "did not answer within 1 seconds" in generation["errorMessage"]
    assert len(fake.image_requests()) == 1


def test_unreachable_gemini_is_reported_as_such(start_server: Callable[..., Running]) -> None:
    running = start_server(
        generation__provider="gemini",
        generation__gemini_api_key=KEY,
        generation__gemini_base_url=f"http://127.0.0.1:{free_port()}",
        generation__timeout_seconds=1,
        generation__max_retries=0,
    )
    generation = failed(running, autoEnhance=False)
    assert "could not be reached" in generation["errorMessage"]


def test_enhancement_network_failure_falls_back_to_the_original_prompt(
    gemini: Callable[..., Running], fake: FakeGemini
) -> None:
    running = gemini()
    fake.queue(Answer("hang", delay=0.01))  # the text request gets no answer at all
    generation = created(running, prompt="a windmill")
    assert generation["status"] == "success", generation["errorMessage"]
    assert generation["prompt"] == "a windmill"
    assert generation["meta"]["enhancementError"]


# ============================================================ API: the API key


def test_the_api_key_never_leaks(
    gemini: Callable[..., Running], fake: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    """Not in responses, error messages, meta or logs, even when Gemini echoes it."""
    caplog.set_level(logging.DEBUG)
    running = gemini(generation__max_retries=1)
    echo = f"API key not valid: {KEY} (key {KEY!r})"
    fake.queue(
        # 1: enhancement echoes the key, the image request too
        Answer("error", 400, text=echo),
        Answer("error", 400, text=echo),
        # 2: auth failure, then retries of a server error, then a timeout
        Answer("error", 401, text=echo),
        Answer("error", 500, text=echo),
        Answer("error", 500, text=echo),
        Answer("hang", delay=1.5),
    )
    responses = [
        create(running, prompt="first"),
        create(running, prompt="second", autoEnhance=False),
        create(running, prompt="third", autoEnhance=False),
        create(running, prompt="fourth", autoEnhance=False),
    ]
    generations = [r.json()["data"] for r in responses]
    assert [g["status"] for g in generations] == ["failed"] * 4
    assert "[redacted]" in generations[0]["meta"]["enhancementError"]
    assert "[redacted]" in generations[0]["errorMessage"]
    assert all(r.headers["x-goog-api-key"] == KEY for r in fake.requests)

    later = [running.project("GET", f"{GENERATIONS}/{g['id']}") for g in generations]
    later.append(running.project("GET", GENERATIONS))
    later.append(running.client.get("/api/info"))
    later.append(running.client.get("/health"))
    for response in responses + later:
        assert KEY not in response.text
        assert KEY not in str(response.headers)
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in (record.exc_text or "")
    assert KEY not in caplog.text
    assert any("retrying" in r.getMessage() for r in caplog.records)


def test_unexpected_failures_are_logged_without_the_key(
    gemini: Callable[..., Running], fake: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection dropped by Gemini ends the generation failed; the logged
    traceback does not carry the key."""
    caplog.set_level(logging.DEBUG)
    running = gemini()
    fake.queue(Answer("hang", delay=0.01))
    response = create(running, autoEnhance=False)
    assert response.status_code == 201
    assert response.json()["data"]["status"] == "failed"
    assert KEY not in response.text
    assert KEY not in caplog.text
