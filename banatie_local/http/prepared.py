"""The response headers of a served image, built from its facts and encoded once per
cache entry, and ``cached_response``: a memory hit answered with them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, cast

from sanic.response import HTTPResponse

from banatie_local.services.imagecache import CachedImage


def image_headers(
    image_id: str, file_hash: str, max_age: int, scope: str | None = None
) -> dict[str, str]:
    """The fixed headers of an image response (API.md §5.1, §6)."""
    headers = {
        "Cache-Control": f"public, max-age={max_age}",
        "ETag": f'"{file_hash}"',
        "X-Image-Id": image_id,
    }
    if scope is not None:
        headers["X-Scope"] = scope
    return headers


@dataclass(frozen=True, slots=True)
class PreparedHeaders:
    """An entry's headers, as a dictionary (for a 304) and as the bytes a 200 sends
    (with its content type), encoded once rather than on every response: Sanic would
    re-sanitize each value per request."""

    etag: str  # quoted, as it goes on the wire
    headers: dict[str, str]
    wire: tuple[tuple[bytes, bytes], ...]
    max_age: int


def prepared(entry: CachedImage, max_age: int) -> PreparedHeaders:
    """The entry's headers, made on its first response and kept with it. A shorter
    ``max_age`` (a signed URL that expires sooner) gets its own, not kept; the
    longest, the configured one, is what stays."""
    ready = cast(PreparedHeaders | None, entry.prepared)
    if ready is not None and ready.max_age == max_age:
        return ready
    headers = image_headers(entry.image_id, entry.file_hash, max_age, entry.scope)
    headers.update(entry.extra)
    fields = [*headers.items(), ("content-type", entry.content_type)]
    wire = tuple((_clean(name).encode("ascii"), _clean(value).encode()) for name, value in fields)
    made = PreparedHeaders(headers["ETag"], headers, wire, max_age)
    if ready is None or max_age > ready.max_age:
        entry.prepared = made
    return made


def _clean(text: str) -> str:
    """What Sanic does to every header: no CR, LF or NUL can split the response."""
    return text.translate(_HEADER_UNSAFE)


_HEADER_UNSAFE: Final = {ord("\r"): None, ord("\n"): None, 0: None}


class _PreparedResponse(HTTPResponse):
    """An ``HTTPResponse`` whose fixed headers arrive already encoded; only the few
    per-request headers (cache status, hit count, Sanic's own) are encoded here."""

    __slots__ = ("_lease", "_own", "_wire")

    def __init__(
        self,
        entry: CachedImage,
        ready: PreparedHeaders,
        headers: dict[str, str] | None,
        own: Wire,
    ) -> None:
        super().__init__(entry.data, headers=headers, content_type=entry.content_type)
        self._wire = ready.wire
        self._own = own
        self._lease = entry.lease  # a lent buffer stays lent until the body is sent

    @property
    def processed_headers(self) -> Iterator[tuple[bytes, bytes]]:
        yield from self._wire
        yield from self._own
        clean = self._sanitize_header_value
        for name, value in self.headers.items():
            yield clean(name).encode("ascii"), clean(f"{value}").encode()


Wire = tuple[tuple[bytes, bytes], ...]


def cached_response(
    entry: CachedImage,
    ready: PreparedHeaders,
    headers: dict[str, str] | None = None,
    own: Wire = (),
) -> HTTPResponse:
    """The entry's bytes with its prepared headers, plus ``headers`` (plain ASCII,
    made by us) and ``own``: headers already encoded (lower-case names, values we
    made from digits and constants, so nothing to sanitize)."""
    return _PreparedResponse(entry, ready, headers, own)


HIT_STATUS: Final = (b"x-cache-status", b"HIT")


def hit_headers(count: int) -> Wire:
    """A live HIT's per-request headers, encoded without a dictionary."""
    return HIT_STATUS, (b"x-cache-hit-count", b"%d" % count)


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak or strong) or ``*``."""
    if not header:
        return False
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False
