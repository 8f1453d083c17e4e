"""``cached_response``: a memory hit answered with headers encoded once, per entry."""

from __future__ import annotations

from collections.abc import Iterator

from sanic.response import HTTPResponse

from banatie_local.services.imagecache import CachedImage


class _PreparedResponse(HTTPResponse):
    """An ``HTTPResponse`` whose fixed headers arrive already encoded; only the few
    per-request headers (cache status, hit count, Sanic's own) are encoded here."""

    __slots__ = ("_wire",)

    def __init__(self, entry: CachedImage, headers: dict[str, str]) -> None:
        super().__init__(entry.data, headers=headers, content_type=entry.content_type)
        self._wire = entry.wire

    @property
    def processed_headers(self) -> Iterator[tuple[bytes, bytes]]:
        yield from self._wire
        clean = self._sanitize_header_value
        for name, value in self.headers.items():
            yield clean(name).encode("ascii"), clean(f"{value}").encode()


def cached_response(entry: CachedImage, headers: dict[str, str] | None = None) -> HTTPResponse:
    """The entry's bytes with its headers, plus ``headers`` (plain ASCII, made by us)."""
    return _PreparedResponse(entry, headers or {})
