"""A page of live URLs in a real browser (API.md §5.1, §12): every ``<img>`` renders at
the size its variant parameters ask for, and the page talks only to the appliance."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from tests.chromium import BrowserThread, save_screenshot
from tests.conftest import Running

if TYPE_CHECKING:
    from playwright.sync_api import Page

LIVE = "/cdn/default/default/live/browser"  # the default org and project, scope "browser"
ALL_COMPLETE = "() => Array.from(document.images).every(img => img.complete)"
NATURAL_SIZES = "imgs => imgs.map(img => [img.naturalWidth, img.naturalHeight])"


@dataclass(frozen=True)
class Shot:
    """One ``<img>``: a live prompt and its variant parameters (None: not given)."""

    prompt: str
    w: int | None = None
    h: int | None = None
    fit: str | None = None
    format: str | None = None

    def url(self, base: str) -> str:
        params = {"prompt": self.prompt, "w": self.w, "h": self.h}
        params |= {"fit": self.fit, "format": self.format}
        query = urlencode({name: value for name, value in params.items() if value is not None})
        return f"{base}{LIVE}?{query}"

    def check(self, width: int, height: int) -> None:
        """The delivered size: exact for a box that is filled, within it for contain."""
        assert width > 0, f"{self} did not render"
        if self.w and self.h:
            if self.fit == "contain":
                assert width <= self.w, (self, width)
                assert height <= self.h, (self, height)
                assert width == self.w or height == self.h, (self, width, height)
            else:  # cover (the default for a box) or fill
                assert (width, height) == (self.w, self.h), self
        elif self.w:
            assert width == self.w, (self, width)
        elif self.h:
            assert height == self.h, (self, height)


# 13 distinct prompts, 3 of them asked for again at another size: 16 images
SHOTS = [
    Shot("a red fox in the snow", w=120),
    Shot("a lighthouse at dusk", w=200, h=150),
    Shot("a bowl of ramen", w=320, h=180, fit="cover"),
    Shot("a paper crane", w=160, format="webp"),
    Shot("a mountain lake at dawn", h=90),
    Shot("a city tram in the rain", w=240, h=240, fit="contain"),
    Shot("a cat asleep on a keyboard", w=300, h=100, fit="fill"),
    Shot("an old typewriter", w=64, h=64),
    Shot("a field of sunflowers", w=480, format="jpeg"),
    Shot("a snail on a leaf", w=128, h=96, fit="cover", format="webp"),
    Shot("a hot air balloon", h=200, format="png"),
    Shot("a stack of pancakes", w=400, h=300, fit="contain", format="auto"),
    Shot("a lantern in the fog", w=250, h=100, fit="fill", format="jpeg"),
    Shot("a red fox in the snow", w=200, h=200),
    Shot("a lighthouse at dusk", w=90),
    Shot("a bowl of ramen", h=60, format="webp"),
]


def page_html(base: str, shots: list[Shot]) -> str:
    figures = "\n".join(
        f'<figure><img src="{html.escape(shot.url(base))}" alt="">'
        f"<figcaption>{html.escape(urlsplit(shot.url(base)).query)}</figcaption></figure>"
        for shot in shots
    )
    style = (
        "body{display:flex;flex-wrap:wrap;gap:8px;font:10px sans-serif}"
        "figure{margin:0;max-width:480px}figcaption{word-break:break-all}"
    )
    return f"<!doctype html><html><head><style>{style}</style></head><body>{figures}</body></html>"


@dataclass
class Visit:
    sizes: list[tuple[int, int]]
    requested: list[str]
    statuses: dict[str, int]
    screenshot: Path


def visit(browser: BrowserThread, app: Running, shots: list[Shot], name: str) -> Visit:
    """Load a page of ``shots`` from the appliance, wait for every image, screenshot it."""
    requested: list[str] = []
    statuses: dict[str, int] = {}

    def on_page(page: Page) -> Visit:
        page.on("request", lambda request: requested.append(request.url))
        page.on("response", lambda response: statuses.update({response.url: response.status}))
        page.set_content(page_html(app.url, shots))
        page.wait_for_function(ALL_COMPLETE)
        sizes = page.eval_on_selector_all("img", NATURAL_SIZES)
        path = save_screenshot(page, name)
        return Visit([(w, h) for w, h in sizes], requested, statuses, path)

    return browser.run(on_page)


def check_visit(app: Running, shots: list[Shot], result: Visit) -> None:
    urls = [shot.url(app.url) for shot in shots]
    assert len(result.sizes) == len(shots)
    origin = urlsplit(app.url)[:2]
    assert result.requested
    assert all(urlsplit(url)[:2] == origin for url in result.requested), result.requested
    assert set(urls) <= set(result.requested)
    # a refused live URL still draws a PNG in an <img> (§5.1), so check the status too
    assert {url: result.statuses.get(url) for url in urls} == dict.fromkeys(urls, 200)
    for shot, (width, height) in zip(shots, result.sizes, strict=True):
        shot.check(width, height)
    assert result.screenshot.is_file()
    assert result.screenshot.stat().st_size > 0


def test_a_page_of_sixteen_live_images(browser: BrowserThread, app: Running) -> None:
    """16 live URLs (13 prompts, so more than the per-IP limit of 10 new generations:
    the browser on loopback is exempt) at mixed sizes and formats."""
    assert len({shot.prompt for shot in SHOTS}) == 13
    result = visit(browser, app, SHOTS, "live-page-16")
    check_visit(app, SHOTS, result)
