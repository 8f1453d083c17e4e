"""The web gallery (API.md §15) in a real browser against a real server: sign in with
a pasted key, generate, alias, reference, delete, live URLs, errors in words, the
keyboard, and never a request outside the appliance."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from banatie_local.http.routes.gallery import CONTENT_SECURITY_POLICY
from banatie_local.providers import GeneratedImage, ProviderError, ReferenceImage
from banatie_local.providers.offline import OfflineProvider
from tests.chromium import BrowserThread, save_screenshot
from tests.conftest import Running, database_url, run_appliance

if TYPE_CHECKING:
    from playwright.sync_api import Page

REFUSE = "please refuse me"
ALL_IMAGES_LOADED = (
    "() => { const imgs = [...document.querySelectorAll('#grid img')];"
    " return imgs.length > 0 && imgs.every(img => img.complete && img.naturalWidth > 0); }"
)


class RefusingProvider(OfflineProvider):
    """The offline renderer, except that it refuses prompts containing ``REFUSE``."""

    async def generate(
        self, prompt: str, aspect_ratio: str, references: list[ReferenceImage]
    ) -> GeneratedImage:
        if REFUSE in prompt:
            raise ProviderError("the test provider refuses this prompt.")
        return await super().generate(prompt, aspect_ratio, references)


@pytest.fixture(scope="module")
def gallery_app(
    tmp_path_factory: pytest.TempPathFactory, db_kind: str, request: pytest.FixtureRequest
) -> Iterator[Running]:
    """One appliance for the module's tests; each makes the data it looks at."""
    url = database_url(request, db_kind)
    running = run_appliance(
        tmp_path_factory.mktemp("gallery") / "data",
        provider=RefusingProvider(),
        database__url=url,
    )
    yield running
    running.stop()


@dataclass
class Recorder:
    """Every URL the page requests."""

    urls: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> Page:
        page.on("request", lambda request: self.urls.append(request.url))
        return page

    def assert_only(self, app: Running) -> None:
        origin = urlsplit(app.url)[:2]
        assert self.urls, "the page made no request at all"
        outside = [url for url in self.urls if urlsplit(url)[:2] != origin]
        assert not outside, f"requests outside the appliance: {outside}"


def sign_in(page: Page, app: Running, key: str | None = None) -> None:
    from playwright.sync_api import expect

    page.goto(f"{app.url}/")
    page.fill("#signin-key", key or app.project_key or "")
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#nav")).to_be_visible()
    expect(page.locator("#signin")).to_be_hidden()


def generate_in_page(page: Page, prompt: str) -> str:
    """Generate ``prompt`` through the form; the id of the image that tops the grid."""
    from playwright.sync_api import expect

    page.fill("#gen-prompt", prompt)
    page.click("#gen-submit")
    first = page.locator("#grid > li").first
    # the alt text is the prompt as written (before enhancement)
    expect(first.locator(".tile-open img")).to_have_attribute("alt", prompt, timeout=20_000)
    image_id = first.get_attribute("data-id")
    assert image_id
    return image_id


def generate_by_api(app: Running, prompt: str, **body: Any) -> dict[str, Any]:
    response = app.project("POST", "/api/v1/generations", json={"prompt": prompt, **body})
    assert response.status_code == 201, response.text
    generation: dict[str, Any] = response.json()["data"]
    assert generation["status"] == "success", generation
    return generation


def wait_all_images(page: Page) -> None:
    page.wait_for_function(ALL_IMAGES_LOADED)


def js(page: Page, expression: str) -> Any:
    """Evaluate an arrow function: the page's CSP refuses eval of plain strings."""
    return page.evaluate(f"() => {expression}")


# ---------------------------------------------------------------- HTTP, no browser


def test_page_and_assets_over_http(gallery_app: Running) -> None:
    page = gallery_app.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    for directive in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"):
        assert directive in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-cache"
    # no inline script or style (the CSP would refuse them), nothing from outside
    html = page.text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert "<style" not in html
    assert " style=" not in html
    assert not re.search(r"https?://", html)
    assets = re.findall(r'(?:src|href)="(/gallery/[^"]+)"', html)
    assert {urlsplit(a).path for a in assets} == {
        "/gallery/gallery.js",
        "/gallery/gallery.css",
        "/gallery/icon.svg",
    }
    types = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
    for asset in assets:
        answer = gallery_app.client.get(asset)
        assert answer.status_code == 200, asset
        assert answer.headers["content-type"].startswith(types[asset.split("?")[0].rsplit(".")[-1]])
        assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", answer.text), asset
    # without the current version an asset is revalidated, never cached for a year
    assert gallery_app.client.get("/gallery/gallery.js").headers["cache-control"] == "no-cache"
    for missing in ("/gallery/unknown", "/gallery/index.html", "/gallery/..%2Fgallery.py"):
        answer = gallery_app.client.get(missing)
        assert answer.status_code == 404, missing
        assert answer.json()["error"]["code"] == "NOT_FOUND"


# ---------------------------------------------------------------- the browser


def test_sign_in_errors_in_words_and_sign_out(browser: BrowserThread, gallery_app: Running) -> None:
    """A wrong key shows the server's message; a good key is kept until sign-out; a
    stored key that stopped working is dropped with the message; a network failure
    is said in words too."""
    from playwright.sync_api import expect

    recorder = Recorder()
    wrong = "bnt_" + "0" * 64

    def on_page(page: Page) -> None:
        recorder.attach(page)
        page.goto(f"{gallery_app.url}/")
        page.fill("#signin-key", wrong)
        page.keyboard.press("Enter")
        error = page.locator("#signin-error")
        expect(error).to_have_text("The API key is not valid. (INVALID_API_KEY)")
        assert js(page, "localStorage.length") == 0

        sign_in(page, gallery_app)
        assert js(page, "localStorage.getItem('banatie-local.projectKey')") == (
            gallery_app.project_key
        )
        expect(page.locator("#who-project")).to_have_text("default/default")
        page.reload()  # the stored key signs in again
        expect(page.locator("#nav")).to_be_visible()

        # the network fails: said in words, not a silent nothing
        page.route("**/api/v1/generations", lambda route: route.abort())
        page.fill("#gen-prompt", "a kite that never flies")
        page.click("#gen-submit")
        expect(page.locator("#gen-error")).to_contain_text("could not be reached")
        page.unroute("**/api/v1/generations")

        page.click("#sign-out")
        expect(page.locator("#signin")).to_be_visible()
        assert js(page, "localStorage.length") == 0

        # a stored key that no longer works
        js(page, f"localStorage.setItem('banatie-local.projectKey', '{wrong}')")
        page.reload()
        expect(error).to_have_text("The API key is not valid. (INVALID_API_KEY)")
        assert js(page, "localStorage.length") == 0

    browser.run(on_page)
    recorder.assert_only(gallery_app)


@dataclass
class Journey:
    first_id: str = ""
    second_id: str = ""
    alias: str = ""
    failed_text: str = ""
    live_url: str = ""
    preview_width: int = 0


def test_generate_alias_reference_live_and_delete(
    browser: BrowserThread, gallery_app: Running
) -> None:
    """The whole path of a person at the workstation, checked through the API."""
    from playwright.sync_api import expect

    recorder = Recorder()
    journey = Journey(alias=f"@gallery-{uuid.uuid4().hex[:8]}")
    first_prompt = "a lighthouse on a cliff"
    second_prompt = f"the same lighthouse at night {journey.alias}"
    scope = f"gallery-{uuid.uuid4().hex[:6]}"

    def on_page(page: Page) -> None:
        recorder.attach(page)
        sign_in(page, gallery_app)
        journey.first_id = generate_in_page(page, first_prompt)
        expect(page.locator("#jobs .job.done").first).to_contain_text(first_prompt)

        # open it and give it an alias
        page.click(f'#grid > li[data-id="{journey.first_id}"] .tile-open')
        dialog = page.locator("#detail")
        expect(dialog).to_be_visible()
        expect(page.locator("#detail-facts")).to_contain_text("offline")
        expect(page.locator("#detail-facts")).to_contain_text("1024 × 1024 px")
        page.fill("#alias-input", journey.alias)
        page.click("#alias-form button[type=submit]")
        expect(page.locator("#detail-status")).to_have_text(f"Assigned {journey.alias}.")
        expect(page.locator("#detail-title")).to_have_text(f"Image {journey.alias}")

        # the focal point: a click on the image sets it and shows the marker
        box = page.locator("#detail-img").bounding_box()
        assert box
        page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.75)
        expect(page.locator("#detail-status")).to_contain_text("Focal point set")
        expect(page.locator("#focal-marker")).to_be_visible()
        page.click("#detail-close")
        expect(dialog).to_be_hidden()
        expect(page.locator(f'#grid > li[data-id="{journey.first_id}"]')).to_contain_text(
            journey.alias
        )

        # a second generation names the first by its alias in the prompt
        journey.second_id = generate_in_page(page, second_prompt)

        # a refused generation is shown plainly
        page.fill("#gen-prompt", f"a storm, {REFUSE}")
        page.click("#gen-submit")
        failed = page.locator("#jobs .job.failed")
        expect(failed).to_contain_text("The test provider refuses this prompt.")
        journey.failed_text = failed.inner_text()

        # delete the second image: Cancel keeps it, Delete removes it
        page.click(f'#grid > li[data-id="{journey.second_id}"] .tile-open')
        expect(dialog).to_be_visible()
        page.click("#detail-delete")
        confirm = page.locator("#confirm")
        expect(confirm).to_be_visible()
        page.click("#confirm-cancel")
        expect(confirm).to_be_hidden()
        expect(dialog).to_be_visible()
        page.click("#detail-delete")
        expect(confirm).to_contain_text("cannot be undone")
        page.click("#confirm-ok")
        expect(dialog).to_be_hidden()
        expect(page.locator(f'#grid > li[data-id="{journey.second_id}"]')).to_have_count(0)

        # a live URL with its preview and the scope's counts
        page.click("#nav a[data-view=live]")
        page.fill("#live-scope", scope)
        page.fill("#live-prompt", "a red bicycle against a yellow wall")
        page.fill("#live-w", "320")
        page.click("#live-form button[type=submit]")
        page.wait_for_function(
            "() => document.getElementById('live-preview').naturalWidth > 0", timeout=20_000
        )
        journey.preview_width = js(page, "document.getElementById('live-preview').naturalWidth")
        journey.live_url = page.input_value("#live-url")
        expect(page.locator("#live-status")).to_contain_text("MISS")
        row = page.locator("#scopes-body tr", has_text=scope)
        expect(row).to_contain_text("1 / 30")
        page.click("#live-copy")
        expect(page.locator("#live-copied")).to_contain_text("URL")

    browser.run(on_page)
    recorder.assert_only(gallery_app)

    # the first image carries the alias; the second generation referenced it
    first = gallery_app.project("GET", f"/api/v1/images/{journey.first_id}").json()["data"]
    assert first["alias"] == journey.alias
    focal = first["focalPoint"]
    assert abs(focal["x"] - 0.25) < 0.02, focal
    assert abs(focal["y"] - 0.75) < 0.02, focal
    generations = gallery_app.project("GET", "/api/v1/generations?limit=100").json()["data"]
    second = next(g for g in generations if g["originalPrompt"] == second_prompt)
    assert second["referencedImages"] == [{"imageId": journey.first_id, "alias": journey.alias}]
    assert second["outputImageId"] is None  # its image was deleted
    gone = gallery_app.project("GET", f"/api/v1/images/{journey.second_id}")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "IMAGE_NOT_FOUND"
    refused = next(g for g in generations if REFUSE in (g["originalPrompt"] or g["prompt"]))
    assert refused["status"] == "failed"
    assert "refuses this prompt" in journey.failed_text
    # the URL the person copies (on server.public_base_url, like every storageUrl), and
    # its preview at the asked width
    base = gallery_app.settings.public_base_url
    assert journey.live_url.startswith(f"{base}/cdn/default/default/live/{scope}?")
    assert "prompt=a%20red%20bicycle%20against%20a%20yellow%20wall" in journey.live_url
    assert journey.preview_width == 320


def test_live_url_is_signed_when_the_project_requires_it(
    browser: BrowserThread, gallery_app: Running
) -> None:
    from playwright.sync_api import expect

    recorder = Recorder()
    seen: dict[str, Any] = {}

    def on_page(page: Page) -> None:
        recorder.attach(page)
        sign_in(page, gallery_app)
        page.click("#nav a[data-view=live]")
        page.fill("#live-prompt", "a signed paper kite")
        page.click("#live-form button[type=submit]")
        page.wait_for_function(
            "() => document.getElementById('live-preview').naturalWidth > 0", timeout=20_000
        )
        expect(page.locator("#live-signed")).to_contain_text("Signed")
        seen["url"] = page.input_value("#live-url")

    mode = gallery_app.project("PUT", "/api/v1/project", json={"signedUrls": "live"})
    assert mode.status_code == 200, mode.text
    try:
        browser.run(on_page)
    finally:
        gallery_app.project("PUT", "/api/v1/project", json={"signedUrls": "off"})
    recorder.assert_only(gallery_app)
    assert "&sig=" in seen["url"]


def test_keyboard_opens_and_closes_the_dialogs(
    browser: BrowserThread, gallery_app: Running
) -> None:
    """Enter opens the detail dialog from a tile; Escape closes the confirmation only,
    then the dialog, and focus goes back where it was."""
    from playwright.sync_api import expect

    image_id = generate_by_api(gallery_app, "a paper crane on a desk")["outputImageId"]
    focused: dict[str, Any] = {}

    def on_page(page: Page) -> None:
        sign_in(page, gallery_app)
        tile = page.locator(f'#grid > li[data-id="{image_id}"] .tile-open')
        expect(tile).to_be_visible()
        tile.focus()
        page.keyboard.press("Enter")
        dialog = page.locator("#detail")
        expect(dialog).to_be_visible()
        focused["in_dialog"] = js(
            page, "document.getElementById('detail').contains(document.activeElement)"
        )
        page.focus("#detail-delete")
        page.keyboard.press("Enter")
        expect(page.locator("#confirm")).to_be_visible()
        focused["confirm"] = js(page, "document.activeElement.id")
        page.keyboard.press("Escape")
        expect(page.locator("#confirm")).to_be_hidden()
        expect(dialog).to_be_visible()
        focused["after_confirm"] = js(page, "document.activeElement.id")
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        focused["after_dialog"] = js(page, "document.activeElement.closest('.tile')?.dataset.id")
        focused["alt"] = page.locator(f'#grid > li[data-id="{image_id}"] img').get_attribute("alt")

    browser.run(on_page)
    assert focused["in_dialog"] is True
    assert focused["confirm"] == "confirm-cancel"
    assert focused["after_confirm"] == "detail-delete"
    assert focused["after_dialog"] == image_id
    assert focused["alt"] == "a paper crane on a desk"
    # Escape on the confirmation deleted nothing
    assert gallery_app.project("GET", f"/api/v1/images/{image_id}").status_code == 200


SCREENSHOT_PROMPTS = [
    ("a lighthouse at dusk", "16:9"),
    ("a bowl of ramen", "1:1"),
    ("a red fox in the snow", "4:3"),
    ("a paper crane", "1:1"),
    ("a mountain lake at dawn", "3:2"),
    ("a city tram in the rain", "9:16"),
    ("a field of sunflowers", "21:9"),
    ("a snail on a leaf", "2:3"),
]


def test_screenshots_at_360_and_1440(
    browser: BrowserThread, start_server: Callable[..., Running]
) -> None:
    """A fresh appliance with a few images: the grid at 1440 and 360 px wide and the
    detail dialog (artifacts/screenshots/, kept by CI; the 1440 one is the README's)."""
    app = start_server()
    for prompt, ratio in SCREENSHOT_PROMPTS:
        alias = {"alias": "@hero"} if prompt == "a lighthouse at dusk" else {}
        generate_by_api(app, prompt, aspectRatio=ratio, **alias)
    recorder = Recorder()
    shots: dict[str, Path] = {}
    widths: dict[str, int] = {}

    def on_page(page: Page) -> None:
        from playwright.sync_api import expect

        recorder.attach(page)
        page.set_viewport_size({"width": 1440, "height": 900})
        sign_in(page, app)
        expect(page.locator("#grid > li")).to_have_count(len(SCREENSHOT_PROMPTS))
        wait_all_images(page)
        shots["1440"] = save_screenshot(page, "gallery-1440")
        widths["1440"] = js(page, "document.documentElement.scrollWidth")
        page.locator("#grid > li .tile-open").first.click()
        expect(page.locator("#detail-facts")).to_contain_text("offline")
        page.wait_for_function("() => document.getElementById('detail-img').naturalWidth > 0")
        shots["detail"] = save_screenshot(page, "gallery-detail-1440")
        page.keyboard.press("Escape")
        page.set_viewport_size({"width": 360, "height": 780})
        wait_all_images(page)
        shots["360"] = save_screenshot(page, "gallery-360")
        widths["360"] = js(page, "document.documentElement.scrollWidth")

    browser.run(on_page)
    recorder.assert_only(app)
    # readable at both widths: nothing wider than the window
    assert widths == {"1440": 1440, "360": 360}
    for path in shots.values():
        assert path.is_file()
        assert path.stat().st_size > 10_000
