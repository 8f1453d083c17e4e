"""A real browser for the tests: Debian's ``chromium`` package, driven headless by
Playwright's sync API (no browser download: ``executable_path``).

Playwright runs on a thread of its own (``BrowserThread``): between two sync calls it
leaves its event loop marked as running on the calling thread, so on the test thread
every direct database call (the loop guard of conftest.py) and every ``asyncio.run``
would fail, for the rest of the session."""

from __future__ import annotations

import importlib.util
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
CALL_TIMEOUT = 120  # seconds for one ``BrowserThread.run``; Playwright's own are 30 s

T = TypeVar("T")


def chromium_path() -> str | None:
    """Debian's chromium launcher, or None where it is not installed."""
    return shutil.which("chromium")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install -e '.[test]')"
    if chromium_path() is None:
        return "Debian's chromium is not installed (apt-get install chromium)"
    return None


@contextmanager
def launch_chromium(executable: str) -> Iterator[Browser]:
    """A headless chromium, closed on exit. ``chromium_sandbox=False`` (Playwright's
    default, spelled out) passes ``--no-sandbox``: as root the sandbox will not start."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, chromium_sandbox=False
        )
        try:
            yield browser
        finally:
            browser.close()


class BrowserThread:
    """One headless chromium on a thread of its own; ``run`` calls a function there."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
        self._stack = ExitStack()
        self._browser: Browser | None = None

    def start(self) -> BrowserThread:
        def launch() -> Browser:
            return self._stack.enter_context(launch_chromium(self.executable))

        self._browser = self._executor.submit(launch).result(CALL_TIMEOUT)
        return self

    def run(self, fn: Callable[[Page], T]) -> T:
        """``fn(page)`` on the browser's thread with a new page in a new context (closed
        afterwards); its result, or its exception raised here."""
        browser = self._browser
        assert browser is not None, "BrowserThread.start was not called"

        def call() -> T:
            before = established()
            ports: set[int] = set()
            context = browser.new_context()
            context.on("request", lambda request: ports.add(port_of(request.url)))
            try:
                return fn(context.new_page())
            finally:
                context.close()
                wait_closed(before, ports)

        return self._executor.submit(call).result(CALL_TIMEOUT)

    def close(self) -> None:
        self._executor.submit(self._stack.close).result(CALL_TIMEOUT)
        self._executor.shutdown()


def port_of(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def established() -> set[tuple[str, int]]:
    """This host's established IPv4 TCP connections: (local address, remote port)."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:  # not Linux: nothing to wait for
        return set()
    rows = (line.split() for line in lines)
    return {(row[1], int(row[2].rsplit(":", 1)[1], 16)) for row in rows if row[3] == "01"}


def wait_closed(before: set[tuple[str, int]], ports: set[int], timeout: float = 5) -> None:
    """Wait until the connections a closed context opened to ``ports`` are gone.

    Chromium closes them a moment after ``context.close()``; a test server stopped
    before that leaves Sanic's connection tasks pending on a closed loop, and they
    complain when they are collected, in a later test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not {c for c in established() - before if c[1] in ports}:
            return
        time.sleep(0.02)


def save_screenshot(page: Page, name: str) -> Path:
    """A full-page PNG of ``page`` in artifacts/screenshots/ (created when needed)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
