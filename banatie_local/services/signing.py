"""Signed URLs (API.md §13): a project can require that its public URLs carry a
signature made with its secret, so that only whoever holds the secret can spend its
generation budget through live URLs (``live``) or publish its images at all (``all``).

``sig`` = base64url, unpadded, of HMAC-SHA256(secret, canonical). The canonical form
is the path (percent-decoded, then percent-encoded with only RFC 3986 unreserved
characters and ``/`` left as they are) + ``?`` + every query parameter but ``sig``,
each name and value decoded as a form (``+`` is a space) and encoded the same way,
sorted by name then value and joined as ``name=value`` with ``&``. ``exp`` (Unix
seconds), when present, is signed with the rest and ends the URL's life.

Each project's mode and usable secrets are kept in memory by slugs; a change to the
project row (mode, rotation) is in the change log, so every process drops its copy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, quote, unquote, urlencode

from cachetools import LRUCache

from banatie_local.clock import Clock
from banatie_local.db.boundary import Database
from banatie_local.db.models import Project, SigningSecret
from banatie_local.errors import ApiError, ValidationError
from banatie_local.services.validation import new_id

MODES: Final = ("off", "live", "all")
_MAX_FIELDS: Final = 256
_RELOAD_SECONDS: Final = 1.0
_PROJECT: Final = (
    "SELECT p.id, p.signed_urls FROM projects p JOIN organizations o"
    " ON o.id = p.organization_id WHERE o.slug = ? AND p.slug = ?"
)
_SECRETS: Final = (
    "SELECT secret, retired_at FROM signing_secrets WHERE project_id = ?"
    " ORDER BY created_at DESC, id DESC"
)


class SignatureError(ApiError):
    status = 403
    default_code = "INVALID_SIGNATURE"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a request's signature check found."""

    signed: bool  # a valid signature was presented (lifts the per-IP limit)
    expires: int | None = None  # its signed exp, Unix seconds

    def max_age(self, default: int) -> int:
        """``Cache-Control`` max-age for the answer: never past the URL's ``exp``."""
        if self.expires is None:
            return default
        return max(0, min(default, int(self.expires - time.time())))


UNSIGNED: Final = Verdict(False)


def canonical(path: str, query: str) -> str:
    """What is signed for ``path`` and the raw ``query`` string (``sig`` left out)."""
    return _canonical(path, _pairs(query))


def _pairs(query: str) -> list[tuple[str, str]]:
    """The query's parameters, each name and value decoded as a form."""
    try:
        return parse_qsl(query, keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    except ValueError:  # too many fields
        raise SignatureError("the URL's signature does not match it.") from None


def _canonical(path: str, pairs: list[tuple[str, str]]) -> str:
    try:
        encoded = sorted((_encode(n), _encode(v)) for n, v in pairs if n != "sig")
        head = quote(unquote(path), safe="/")
    except UnicodeEncodeError:  # text that is not text
        raise SignatureError("the URL's signature does not match it.") from None
    return head + "?" + "&".join(f"{name}={value}" for name, value in encoded)


def _matches(known: ProjectSigning, message: bytes, wanted: bytes, now: float) -> float | None:
    """Until when ``wanted`` is the signature of ``message`` under a usable secret
    (``inf`` for the current one), or None; every secret is tried and compared in
    constant time."""
    found: float | None = None
    for secret, until in known.keys:
        mac = hmac.new(secret, message, hashlib.sha256).digest()
        expected = base64.urlsafe_b64encode(mac).rstrip(b"=")
        usable = until is None or now < until
        if hmac.compare_digest(expected, wanted) and usable:
            found = math.inf if until is None else until
    return found


def _unexpired(expires: int | None) -> Verdict:
    """A valid signature's verdict; 403 ``URL_EXPIRED`` once its ``exp`` has passed."""
    if expires is not None and time.time() >= expires:
        raise SignatureError("this signed URL has expired.", "URL_EXPIRED")
    return Verdict(True, expires)


def _encode(text: str) -> str:
    return quote(text, safe="")


def sign(secret: bytes, path: str, query: str) -> str:
    mac = hmac.new(secret, canonical(path, query).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class ProjectSigning:
    project_id: str
    mode: str
    keys: tuple[tuple[bytes, float | None], ...]  # secret, usable until (None: current)
    loaded_at: float = field(default_factory=time.time)

    def requires(self, kind: str) -> bool:
        return self.mode == "all" or (self.mode == "live" and kind == "live")


@dataclass
class SigningService:
    db: Database
    clock: Clock
    grace_seconds: int
    _known: dict[tuple[str, str], ProjectSigning] = field(default_factory=dict)
    # URLs whose signature matched: (org, project, path, query) -> (exp, secret usable
    # until), so a signed HIT costs one lookup, not a parse and an HMAC
    _verified: LRUCache[tuple[str, str, str, str], tuple[int | None, float]] = field(
        default_factory=lambda: LRUCache(maxsize=50_000)
    )

    # ------------------------------------------------------------- checking

    def quick_pass(self, org: str, project: str, query: str, kind: str) -> bool:
        """The hot path: True when this request needs no signature work at all (the
        project is known, requires none for ``kind``, and presents none: a query
        without the letters of ``sig`` has no parameter that decodes to it)."""
        known = self._known.get((org, project))
        return known is not None and not known.requires(kind) and "sig" not in query

    async def check(self, org: str, project: str, path: str, query: str, kind: str) -> Verdict:
        """Whether the request carries a valid signature, or needs none. 403
        ``INVALID_SIGNATURE`` when one is required or presented and does not match;
        403 ``URL_EXPIRED`` after a signed ``exp``. ``kind``: live or image."""
        known = self._known.get((org, project))
        if known is None:
            known = await self.db.read(self.load, org, project)
            if known is None:
                return UNSIGNED  # no such project: the route answers 404
        memo = (org, project, path, query)
        seen = self._verified.get(memo)
        if seen is not None and time.time() < seen[1]:
            return _unexpired(seen[0])  # checked before: only exp can have changed
        pairs = _pairs(query) if "sig" in query or known.requires(kind) else []
        presented = next((value for name, value in pairs if name == "sig"), None)
        if presented is None:
            if known.requires(kind):
                raise SignatureError(
                    f"project {org}/{project} accepts only signed URLs: add the sig "
                    "parameter (POST /api/v1/signed-urls, or banatie-local sign-url)."
                )
            return UNSIGNED
        message = _canonical(path, pairs).encode()
        now = time.time()
        wanted = presented.encode("ascii", "replace")
        until = _matches(known, message, wanted, now)
        if until is None and now - known.loaded_at > _RELOAD_SECONDS:
            # a secret made since (by another process) is not in the change log: look
            # once more, at most once a second per project
            known = await self.db.read(self.load, org, project) or known
            until = _matches(known, message, wanted, now)
        if until is None:
            raise SignatureError("the URL's signature does not match it.")
        # the decoded names, as signed: an encoded spelling of exp is still exp
        given = next((value for name, value in pairs if name == "exp"), None)
        if given is not None and not (given.isascii() and given.isdigit() and len(given) <= 12):
            raise ValidationError("exp must be a time in Unix seconds.", field="exp")
        expires = None if given is None else int(given)
        verdict = _unexpired(expires)
        self._verified[memo] = (expires, until)
        return verdict

    def load(self, org: str, project: str) -> ProjectSigning | None:
        """A project's mode and usable secrets (inside a read), kept in memory."""
        row = self.db.execute_sql(_PROJECT, (org, project)).fetchone()
        if row is None:
            return None
        project_id, mode = str(row[0]), str(row[1])
        grace = self.grace_seconds
        keys = tuple(
            (bytes.fromhex(secret), None if retired is None else retired / 1e6 + grace)
            for secret, retired in self.db.execute_sql(_SECRETS, (project_id,)).fetchall()
        )
        known = ProjectSigning(project_id, mode, keys)
        self._known[(org, project)] = known
        return known

    def forget(self) -> None:
        """Drop what is known (a project changed here or in another process). Called
        from the writer thread too: fresh objects replace the old ones (one atomic
        assignment each), so a request reading them on the loop never sees one
        half-cleared."""
        self._known = {}
        self._verified = LRUCache(maxsize=50_000)

    # ------------------------------------------------------------- secrets (writes)

    def secret(self, project: Project) -> str:
        """The project's current secret (hex), made now if it has none (inside a write)."""
        current = (
            SigningSecret.select()
            .where((SigningSecret.project_id == project.id) & SigningSecret.retired_at.is_null())
            .order_by(SigningSecret.created_at.desc())
            .first()
        )
        if current is not None:
            return str(current.secret)
        return self._new_secret(project)

    def rotate(self, project: Project) -> tuple[str, int]:
        """A new secret (inside a write); the previous ones keep signing for the grace
        period. Returns the new secret and when the previous stops working (µs). The
        project row changes too: its change-log entry tells every process."""
        now = self.clock.now_us()
        Project.update(updated_at=now).where(Project.id == project.id).execute()
        project.updated_at = now
        SigningSecret.update(retired_at=now).where(
            (SigningSecret.project_id == project.id) & SigningSecret.retired_at.is_null()
        ).execute()
        expired = now - self.grace_seconds * 1_000_000
        SigningSecret.delete().where(
            (SigningSecret.project_id == project.id) & (SigningSecret.retired_at < expired)
        ).execute()
        return self._new_secret(project), now + self.grace_seconds * 1_000_000

    def _new_secret(self, project: Project) -> str:
        """A new current secret. Other processes find it when a URL signed with it
        does not match what they know (``check`` looks again)."""
        value = secrets.token_bytes(32).hex()
        SigningSecret.create(
            id=new_id(), project_id=project.id, secret=value, created_at=self.clock.now_us()
        )
        self.forget()
        return value

    def set_mode(self, project: Project, mode: str) -> None:
        """Change the project's mode (inside a write, with the project saved by the
        caller); a secret is made when the mode first needs one."""
        if mode not in MODES:
            raise ValidationError("signedUrls must be off, live or all.", field="signedUrls")
        project.signed_urls = mode
        if mode != "off":
            self.secret(project)
        self.forget()

    def signed_url(
        self,
        project: Project,
        path: str,
        query: list[tuple[str, str]],
        expires_in: int | None,
    ) -> tuple[str, int | None]:
        """``path?query&sig=…`` signed with the project's secret (inside a write: the
        secret may be made now), and its expiry in Unix seconds."""
        pairs = [(name, value) for name, value in query if name != "sig"]
        given = next((value for name, value in pairs if name == "exp"), None)
        expires = int(given) if given is not None and given.isascii() and given.isdigit() else None
        if expires_in is not None:
            expires = int(self.clock.now_us() / 1e6) + expires_in
            pairs = [p for p in pairs if p[0] != "exp"] + [("exp", str(expires))]
        raw = urlencode(pairs, quote_via=quote)
        signature = sign(bytes.fromhex(self.secret(project)), path, raw)
        joined = f"{raw}&sig={signature}" if raw else f"sig={signature}"
        return f"{path}?{joined}", expires


def check_public_path(path: str, org: str, project: str) -> str:
    """``path`` if it is a public image or live path of ``org/project``, encoded as a
    browser sends it; else 400 naming ``path``."""
    if "?" in path or "#" in path:
        raise ValidationError("path must not contain a query: pass it as query.", field="path")
    decoded = unquote(path)
    if any(segment in (".", "..") for segment in decoded.split("/")):
        raise ValidationError("path must not contain . or .. segments.", field="path")
    prefixes = (
        f"/cdn/{org}/{project}/img/", f"/cdn/{org}/{project}/live/",
        f"/api/images/{org}/{project}/",
    )  # fmt: skip
    if not any(decoded.startswith(p) and len(decoded) > len(p) for p in prefixes):
        raise ValidationError(
            f"path must be a public URL path of project {org}/{project}, such as "
            f"/cdn/{org}/{project}/live/SCOPE or /cdn/{org}/{project}/img/ID.",
            field="path",
        )
    return quote(decoded, safe="/@")


def project_of_path(path: str) -> tuple[str, str] | None:
    """The ``(org, project)`` slugs a public path names, or None."""
    parts = unquote(path).split("/")
    if len(parts) > 4 and parts[1] == "cdn":
        return parts[2], parts[3]
    if len(parts) > 5 and parts[1:3] == ["api", "images"]:
        return parts[3], parts[4]
    return None
