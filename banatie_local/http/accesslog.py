"""The access log (``server.access_log``): one line per response.

Sanic writes a ``sanic.access`` record as it sends each response's headers (errors,
HEAD and 304 answers included), with its facts as ``extra`` and an empty message.
``AccessLine`` turns that record into::

    203.0.113.7 "GET /cdn/acme/web/live/hero?prompt=a+red+bike" 200 48213 2.4ms

client address, method, path with its query string, status, body bytes sent (``0``
for HEAD and 304, ``-`` when unknown) and the time from the request's headers to the
response's. The client is ``request.client_ip``, which ``http/app.py`` makes the
address behind ``server.trusted_proxies`` (``http/clientip.py``).

Keys travel only in the ``X-API-Key`` header, and no header is ever written. A key
sent by mistake in the URL is still kept out: a query parameter named like a
credential (``key``, ``apiKey``, ``token``, ``secret``, …) has its value replaced by
``[redacted]``, and so has anything shaped like an appliance key (``bnt_`` and hex).
"""

from __future__ import annotations

import logging
import re
from typing import Final
from urllib.parse import unquote_plus, urlsplit

from sanic.exceptions import ServerError
from sanic.request import Request

ACCESS_LOGGER: Final = "sanic.access"
REDACTED: Final = "[redacted]"

_SECRET_NAME: Final = re.compile(
    r"key|token|secret|passw|credential|signature|^auth", re.IGNORECASE
)
# also with its underscore percent-encoded, as a client library may send it
_KEY_SHAPE: Final = re.compile(r"bnt(?:_|%5f)[0-9a-f]{8,}", re.IGNORECASE)


class AccessLine(logging.Filter):
    """Rewrites Sanic's access records in place; passes every other record as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = vars(record)
        if "status" not in fields or "request" not in fields:
            return True
        method, target = _method_and_target(str(fields["request"]))
        size = str(fields.get("byte", "-"))
        note = ""
        if size == "DISCONNECTED":  # the client left before the response was sent
            size, note = "-", " (disconnected)"
        elif method == "HEAD":
            size = "0"  # no body is sent, whatever Content-Length says
        elif not size.isdigit():  # chunked: the length is not known up front
            size = "-"
        client = _client(str(fields.get("host", "")))
        duration = str(fields.get("duration", "")).strip() or "-"
        record.msg = '%s "%s %s" %s %s %s%s'
        record.args = (client, method, target, fields["status"], size, duration, note)
        # handlers that print the extras (a JSON formatter) see only the redacted forms
        record.request = f"{method} {target}"
        record.host = client
        return True


def install() -> None:
    """Rewrite this process's access records, and write them whatever ``log.level``
    says: turning ``server.access_log`` on is the request for them."""
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.setLevel(logging.INFO)
    if not any(isinstance(f, AccessLine) for f in logger.filters):
        logger.addFilter(AccessLine())


def redact(target: str) -> str:
    """``target`` (a path and query) with credential-like values replaced."""
    path, sep, query = target.partition("?")
    if sep:
        query = "&".join(_redact_pair(pair) for pair in query.split("&"))
    return _KEY_SHAPE.sub("bnt_" + REDACTED, path + sep + query)


def _redact_pair(pair: str) -> str:
    name, eq, _ = pair.partition("=")
    if eq and _SECRET_NAME.search(unquote_plus(name)):
        return f"{name}={REDACTED}"
    return pair


def _method_and_target(request: str) -> tuple[str, str]:
    """Sanic gives ``"METHOD absolute-URL"``; the path and query are taken from the
    request itself when it is the one being answered, since the URL's host part
    comes from the client's ``Host`` header and could hide where the path starts."""
    method, _, url = request.partition(" ")
    try:
        current = Request.get_current()
    except ServerError:
        current = None
    if current is not None and current.method == method and current.url == url:
        query = current.query_string
        target = current.path + ("?" + query if query else "")
    elif url:
        # a request Sanic could not parse, or a disconnect outside the request's task
        parts = urlsplit(url)
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    else:
        target = "-"
    return method or "-", redact(target)


def _client(host: str) -> str:
    """The address of Sanic's ``address:port`` (a bare IPv6 address has colons too)."""
    address, sep, _ = host.rpartition(":")
    return address if sep and address else "-"
