"""Signed URLs (API.md §13): the project's ``signedUrls`` mode, its secret and its
rotation, the canonical form that is signed, expiry, ``POST /api/v1/signed-urls`` and
``banatie-local sign-url``, and the signers the README shows (run here, so that the
README cannot drift from what the server accepts).

Most tests share one appliance; each works in a project of its own, so that no mode
or secret of one test leaks into another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import httpx
import pytest
from click.testing import Result

from tests.api.test_cdn import raw_request
from tests.api.test_errors import assert_error
from tests.conftest import Running
from tests.helpers import eventually
from tests.imagedata import png_bytes

README = Path(__file__).resolve().parents[2] / "README.md"
HEX_SECRET = re.compile(r"^[0-9a-f]{64}$")
SIG = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 bytes, base64url, no padding
DAY = 86400

Start = Callable[..., Running]
Signer = Callable[..., str]
_numbers = itertools.count(1)


# --------------------------------------------------------------------------- signers


def readme_block(language: str, marker: str) -> str:
    """The README's fenced ``language`` block that contains ``marker``."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(rf"^```{language}\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    found = [block for block in blocks if marker in block]
    assert len(found) == 1, f"README.md has {len(found)} {language} blocks with {marker!r}"
    return str(found[0])


@pytest.fixture(scope="module")
def readme_sign_url() -> Signer:
    """``sign_url(secret, url, expires_in=None)`` exactly as README.md shows it."""
    namespace: dict[str, Any] = {}
    exec(compile(readme_block("python", "def sign_url"), "README.md", "exec"), namespace)
    sign_url: Signer = namespace["sign_url"]
    return sign_url


def reference_sign(secret: str, path: str, pairs: list[tuple[str, str]]) -> str:
    """The signature of ``path`` with the (decoded) query ``pairs``, written here from
    the rules (API.md §13), independently of the server's code and of the README."""

    def encode(text: str) -> str:
        return quote(text, safe="")

    fields = sorted((encode(name), encode(value)) for name, value in pairs if name != "sig")
    canonical = quote(unquote(path), safe="/") + "?" + "&".join(f"{n}={v}" for n, v in fields)
    mac = hmac.new(bytes.fromhex(secret), canonical.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def signed_query(secret: str, path: str, pairs: list[tuple[str, str]]) -> str:
    """``path?query&sig=…``: ``pairs`` encoded with %20 for spaces, then signed."""
    query = urlencode(pairs, quote_via=quote)
    sig = reference_sign(secret, path, pairs)
    return f"{path}?{query}&sig={sig}" if query else f"{path}?sig={sig}"


def replace_param(url: str, name: str, value: str) -> str:
    """``url`` with the raw value of its parameter ``name`` replaced."""
    path, _, query = url.partition("?")
    parts = [
        f"{name}={value}" if part.split("=", 1)[0] == name else part for part in query.split("&")
    ]
    return f"{path}?{'&'.join(parts)}"


def param(url: str, name: str) -> str:
    return dict(parse_qsl(urlsplit(url).query))[name]


# --------------------------------------------------------------------------- projects


@dataclass
class Site:
    """A project of its own on a running appliance, with its key."""

    app: Running
    org: str
    slug: str
    key: str

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.app.project(method, path, headers={"X-API-Key": self.key}, **kwargs)

    def live(self, scope: str = "main") -> str:
        return f"/cdn/{self.org}/{self.slug}/live/{scope}"

    def img(self, ref: str) -> str:
        return f"/cdn/{self.org}/{self.slug}/img/{ref}"

    def set_mode(self, mode: str) -> dict[str, Any]:
        response = self.call("PUT", "/api/v1/project", json={"signedUrls": mode})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    def mode(self) -> str:
        response = self.call("GET", "/api/v1/project")
        assert response.status_code == 200, response.text
        return str(response.json()["data"]["signedUrls"])

    def secret(self) -> str:
        response = self.call("GET", "/api/v1/project/signing-secret")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True
        secret = str(body["data"]["secret"])
        assert HEX_SECRET.match(secret), secret
        return secret

    def rotate(self) -> dict[str, Any]:
        response = self.call("POST", "/api/v1/project/signing-secret/rotate")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        assert HEX_SECRET.match(data["secret"])
        return data

    def upload(self, alias: str | None = None) -> str:
        fields = {"alias": alias} if alias else {}
        response = self.call(
            "POST",
            "/api/v1/images/upload",
            files={"file": ("a.png", png_bytes(6, 4), "image/png")},
            data=fields,
        )
        assert response.status_code == 201, response.text
        return str(response.json()["data"]["id"])


def new_site(app: Running, org: str = "signing") -> Site:
    """A new project (and its key) on ``app``."""
    slug = f"site-{next(_numbers)}"
    return Site(app, org, slug, app.new_project_key(org, slug))


def fetch(app: Running, url: str) -> httpx.Response:
    """GET ``url`` (a path and query) byte for byte, as a browser would send it."""
    return raw_request(app, url)


def assert_image(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/")


def refused(response: httpx.Response, code: str = "INVALID_SIGNATURE") -> None:
    assert_error(response, 403, code)


@pytest.fixture
def site(module_app: Running) -> Site:
    """A fresh project on the module's appliance."""
    return new_site(module_app)


# --------------------------------------------------------------------------- the mode


def test_mode_is_off_by_default_and_a_change_applies_at_once(site: Site) -> None:
    app = site.app
    image = site.upload()
    assert site.mode() == "off"
    assert_image(fetch(app, f"{site.live()}?prompt=open"))
    assert_image(fetch(app, site.img(image)))

    assert site.set_mode("live")["signedUrls"] == "live"
    assert site.mode() == "live"
    refused(fetch(app, f"{site.live()}?prompt=open"))  # even a cached prompt
    refused(fetch(app, f"{site.live()}?prompt=new"))
    assert_image(fetch(app, site.img(image)))

    assert site.set_mode("all")["signedUrls"] == "all"
    assert site.mode() == "all"
    refused(fetch(app, f"{site.live()}?prompt=open"))
    refused(fetch(app, site.img(image)))
    refused(fetch(app, f"{site.img(image)}?w=3"))

    # other settings change without touching the mode
    other = site.call("PUT", "/api/v1/project", json={"allowNewLiveScopes": True})
    assert other.json()["data"]["signedUrls"] == "all"

    assert site.set_mode("off")["signedUrls"] == "off"
    assert_image(fetch(app, f"{site.live()}?prompt=open"))
    assert_image(fetch(app, site.img(image)))


@pytest.mark.parametrize("value", ["always", "", "LIVE", 1, True])
def test_an_unknown_mode_is_refused(site: Site, value: object) -> None:
    site.set_mode("live")
    response = site.call("PUT", "/api/v1/project", json={"signedUrls": value})
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "signedUrls"}
    assert site.mode() == "live"


def test_a_mode_change_reaches_another_project_only(module_app: Running) -> None:
    first, second = new_site(module_app), new_site(module_app)
    first.set_mode("all")
    assert second.mode() == "off"
    assert_image(fetch(module_app, f"{second.live()}?prompt=still+open"))


# --------------------------------------------------------------------------- the secret


def test_the_secret_is_made_once_kept_and_shown_nowhere_else(site: Site) -> None:
    secret = site.secret()
    assert site.secret() == secret
    assert secret not in site.call("GET", "/api/v1/project").text
    site.set_mode("live")
    assert site.secret() == secret  # a mode change keeps it
    assert new_site(site.app).secret() != secret  # each project has its own


def test_the_secret_needs_the_project_key(site: Site) -> None:
    app = site.app
    assert_error(app.client.get("/api/v1/project/signing-secret"), 401, "MISSING_API_KEY")
    anonymous = app.client.post("/api/v1/project/signing-secret/rotate")
    assert_error(anonymous, 401, "MISSING_API_KEY")
    assert_error(app.admin("GET", "/api/v1/project/signing-secret"), 403, "FORBIDDEN")
    assert_error(app.admin("POST", "/api/v1/project/signing-secret/rotate"), 403, "FORBIDDEN")


def test_the_readme_python_signer_is_accepted(site: Site, readme_sign_url: Signer) -> None:
    app = site.app
    site.set_mode("all")
    secret = site.secret()
    url = readme_sign_url(secret, f"{site.live('hero')}?prompt=a%20lighthouse%20at%20dusk")
    first = fetch(app, url)
    assert_image(first)
    assert first.headers["x-cache-status"] == "MISS"
    again = fetch(app, url)
    assert again.headers["x-cache-status"] == "HIT"
    assert again.content == first.content
    # with an expiry, with other parameters, on an image, and as a whole URL
    timed = readme_sign_url(secret, f"{site.live('hero')}?prompt=a+lighthouse&aspectRatio=1:1", 60)
    assert int(param(timed, "exp")) - time.time() == pytest.approx(60, abs=5)
    assert_image(fetch(app, timed))
    image = site.upload(alias="@logo")
    assert_image(fetch(app, readme_sign_url(secret, site.img(image))))
    assert_image(fetch(app, readme_sign_url(secret, f"{site.img('@logo')}?w=3&format=webp")))
    whole = readme_sign_url(secret, f"https://images.example.com{site.img(image)}")
    assert whole.startswith("https://images.example.com/cdn/")
    assert_image(fetch(app, whole.removeprefix("https://images.example.com")))
    # and it agrees with the rules written out here
    path, _, query = url.partition("?")
    pairs = parse_qsl(query)
    assert pairs[-1][1] == reference_sign(secret, path, pairs[:-1])
    assert SIG.match(pairs[-1][1])


# --------------------------------------------------------------------------- canonical form


def test_parameter_order_does_not_matter(site: Site) -> None:
    app = site.app
    site.set_mode("live")
    secret = site.secret()
    path = site.live("order")
    pairs = [("prompt", "a red kite"), ("aspectRatio", "1:1"), ("autoEnhance", "false")]
    url = signed_query(secret, path, pairs)
    first = fetch(app, url)
    assert_image(first)
    fields = urlsplit(url).query.split("&")
    for order in ([3, 2, 1, 0], [1, 3, 0, 2], [0, 3, 1, 2]):  # sig first, last, between
        reordered = f"{path}?{'&'.join(fields[i] for i in order)}"
        response = fetch(app, reordered)
        assert_image(response)
        assert response.content == first.content


def test_repeated_parameters_are_signed_in_value_order(site: Site) -> None:
    app = site.app
    site.set_mode("live")
    secret = site.secret()
    path = site.live("repeat")
    url = signed_query(secret, path, [("prompt", "a kite"), ("tag", "b"), ("tag", "a")])
    assert_image(fetch(app, url))
    swapped = url.replace("tag=b&tag=a", "tag=a&tag=b")
    assert swapped != url
    assert_image(fetch(app, swapped))
    refused(fetch(app, url.replace("tag=b&tag=a", "tag=a&tag=a")))


def test_plus_and_percent_20_are_the_same_space(site: Site) -> None:
    app = site.app
    site.set_mode("live")
    secret = site.secret()
    path = site.live("spaces")
    with_20 = signed_query(secret, path, [("prompt", "a kite over the sea")])
    assert "a%20kite" in with_20
    first = fetch(app, with_20)
    assert_image(first)
    with_plus = with_20.replace("%20", "+")
    second = fetch(app, with_plus)
    assert_image(second)
    assert second.headers["x-cache-status"] == "HIT"  # the same prompt, the same image
    assert second.content == first.content
    # a literal plus is %2B, another prompt, another signature
    refused(fetch(app, with_20.replace("%20", "%2B")))


def test_path_and_value_encodings_that_decode_alike_are_the_same(site: Site) -> None:
    app = site.app
    site.set_mode("all")
    secret = site.secret()
    site.upload(alias="@brand")
    url = signed_query(secret, site.img("@brand"), [("w", "3")])
    assert_image(fetch(app, url))
    assert_image(fetch(app, url.replace("/@brand", "/%40brand")))
    assert_image(fetch(app, url.replace("w=3", "%77=%33")))
    # characters that quote(safe="") escapes but a browser may send as they are
    path = site.live("marks")
    tricky = [("prompt", "it's (nearly) done! * ~ ünïcode ✓ 100% & a=b")]
    encoded = signed_query(secret, path, tricky)
    assert "%27" in encoded
    assert "%21" in encoded
    assert "~" in encoded
    first = fetch(app, encoded)
    assert_image(first)
    loose = encoded
    for escaped, raw in (("%27", "'"), ("%28", "("), ("%29", ")"), ("%21", "!"), ("%2A", "*")):
        loose = loose.replace(escaped, raw)
    loose = loose.replace("~", "%7E").replace("%C3%BC", "%c3%bc")
    assert loose != encoded
    second = fetch(app, loose)
    assert_image(second)
    assert second.content == first.content


def tampered(url: str, secret: str, other_secret: str) -> dict[str, str]:
    """Ways to change a signed live URL ``…/live/tamper?prompt=a+calm+lake&sig=…``."""
    path, _, query = url.partition("?")
    sig = param(url, "sig")
    other = signed_query(other_secret, path, [("prompt", "a calm lake")])
    flipped = ("B" if sig[0] == "A" else "A") + sig[1:]
    mac = base64.urlsafe_b64decode(sig + "=")
    return {
        "prompt": url.replace("a%20calm%20lake", "a%20calm%20lakes"),
        "prompt case": url.replace("calm", "Calm"),
        "added parameter": f"{url}&aspectRatio=1:1",
        "added empty parameter": f"{url}&x=",
        "removed parameter": f"{path}?sig={sig}",
        "scope": url.replace("/live/tamper", "/live/tamper2"),
        "other secret": other,
        "one character": replace_param(url, "sig", flipped),
        "truncated": replace_param(url, "sig", sig[:-1]),
        "padded": replace_param(url, "sig", sig + "="),
        "standard base64": replace_param(url, "sig", quote(base64.b64encode(mac), safe="")),
        "hex": replace_param(
            url, "sig", hmac.new(bytes.fromhex(secret), b"x", hashlib.sha256).hexdigest()
        ),
        "empty": replace_param(url, "sig", ""),
        "not ascii": replace_param(url, "sig", "%C3%A9" + sig[1:]),
        "huge": replace_param(url, "sig", "A" * 4000),
        "a wrong sig before the right one": f"{path}?{query.replace('sig=', 'sig=x&sig=')}",
    }


def test_any_change_to_a_signed_url_is_refused(site: Site) -> None:
    app = site.app
    site.set_mode("live")
    secret = site.secret()
    url = signed_query(secret, site.live("tamper"), [("prompt", "a calm lake")])
    assert_image(fetch(app, url))  # and now the query is known to the hot path
    for name, changed in tampered(url, secret, "00" * 32).items():
        assert changed != url, name
        response = fetch(app, changed)
        assert response.status_code == 403, (name, changed, response.text)
        refused(response)
    assert_image(fetch(app, url))


def test_a_presented_signature_is_checked_even_when_none_is_required(site: Site) -> None:
    app = site.app
    assert site.mode() == "off"
    secret = site.secret()
    image = site.upload()
    good = signed_query(secret, site.live(), [("prompt", "a quiet field")])
    assert_image(fetch(app, good))
    refused(fetch(app, good.replace("quiet", "loud")))
    refused(fetch(app, f"{site.live()}?prompt=x&sig=nonsense"))
    assert_image(fetch(app, signed_query(secret, site.img(image), [])))
    refused(fetch(app, f"{site.img(image)}?sig=nonsense"))


# --------------------------------------------------------------------------- routes by mode


def test_live_mode_leaves_image_urls_open(site: Site) -> None:
    app = site.app
    site.set_mode("live")
    image = site.upload(alias="@open")
    assert_image(fetch(app, site.img(image)))
    assert_image(fetch(app, site.img("@open")))
    assert_image(fetch(app, f"{site.img(image)}?w=2&format=png"))
    refused(fetch(app, f"{site.live()}?prompt=a+lamp"))
    assert_image(fetch(app, signed_query(site.secret(), site.live(), [("prompt", "a lamp")])))


def test_all_mode_requires_signed_image_urls(site: Site) -> None:
    app = site.app
    site.set_mode("all")
    secret = site.secret()
    image = site.upload(alias="@locked")
    for ref in (image, "@locked"):
        refused(fetch(app, site.img(ref)))
        refused(fetch(app, f"{site.img(ref)}?w=2"))
        assert_image(fetch(app, signed_query(secret, site.img(ref), [])))
        variant = fetch(app, signed_query(secret, site.img(ref), [("w", "2"), ("format", "png")]))
        assert_image(variant)
        assert variant.headers["content-type"] == "image/png"
    # a signed URL for one size does not serve another
    sized = signed_query(secret, site.img(image), [("w", "2")])
    refused(fetch(app, sized.replace("w=2", "w=3")))
    # HEAD and conditional requests are checked too
    plain = app.client.head(site.img(image))
    assert plain.status_code == 403
    etag = fetch(app, signed_query(secret, site.img(image), [])).headers["etag"]
    conditional = app.client.get(site.img(image), headers={"If-None-Match": etag})
    refused(conditional)
    # live URLs too, with their size and format parameters
    live = signed_query(secret, site.live(), [("prompt", "a lock"), ("w", "8"), ("format", "png")])
    assert_image(fetch(app, live))
    refused(fetch(app, f"{site.live()}?prompt=a+lock&w=8&format=png"))


def test_legacy_image_route_follows_the_all_mode(module_app: Running) -> None:
    site = new_site(module_app)
    response = site.call(
        "POST",
        "/api/upload",
        files={"file": ("a.png", png_bytes(), "image/png")},
        data={"filename": "badge.png"},
    )
    assert response.status_code == 201, response.text
    path = "/api/images/" + response.json()["data"]["filepath"]
    assert path == f"/api/images/{site.org}/{site.slug}/uploads/badge.png"
    assert_image(module_app.client.get(path))
    site.set_mode("live")
    assert_image(module_app.client.get(path))
    site.set_mode("all")
    assert_error(module_app.client.get(path), 403, "INVALID_SIGNATURE")
    url = signed_query(site.secret(), path, [])
    assert_image(module_app.client.get(url))
    assert_error(module_app.client.get(f"{url}x"), 403, "INVALID_SIGNATURE")
    # a name that cannot exist answers 403 before 404
    assert_error(module_app.client.get(path + "x"), 403, "INVALID_SIGNATURE")


# --------------------------------------------------------------------------- expiry


def test_expiry(site: Site, readme_sign_url: Signer) -> None:
    app = site.app
    site.set_mode("live")
    secret = site.secret()
    path = site.live("timed")
    now = int(time.time())
    future = signed_query(secret, path, [("prompt", "a clock"), ("exp", str(now + 600))])
    assert_image(fetch(app, future))
    past = signed_query(secret, path, [("prompt", "a clock"), ("exp", str(now - 1))])
    refused(fetch(app, past), "URL_EXPIRED")
    # an expired URL of a cached prompt is refused too
    long_ago = signed_query(secret, path, [("prompt", "a clock"), ("exp", "1")])
    refused(fetch(app, long_ago), "URL_EXPIRED")
    # exp is signed: moving it is tampering, not expiry
    refused(fetch(app, replace_param(past, "exp", str(now + 600))))
    refused(fetch(app, replace_param(future, "exp", str(now + 601))))
    refused(fetch(app, future.replace(f"&exp={now + 600}", "")))
    # the README's signer with a lifetime, and one already over
    assert_image(fetch(app, readme_sign_url(secret, f"{path}?prompt=a+clock", 30)))
    refused(fetch(app, readme_sign_url(secret, f"{path}?prompt=a+clock", -5)), "URL_EXPIRED")
    # an image URL signed with an expiry, even where no signature is required
    image = site.upload()
    refused(fetch(app, signed_query(secret, site.img(image), [("exp", "1000")])), "URL_EXPIRED")
    assert_image(fetch(app, signed_query(secret, site.img(image), [("exp", str(now + 60))])))


@pytest.mark.parametrize("name", ["%65xp", "e%78p", "%65%78%70", "ex%70"])
def test_an_expired_url_stays_expired_whatever_the_spelling_of_exp(site: Site, name: str) -> None:
    """``exp`` is signed as its decoded name, so a percent-encoded spelling carries the
    same signature; it must carry the same expiry too (else an expired URL revives)."""
    site.set_mode("live")
    secret = site.secret()
    url = signed_query(secret, site.live("revive"), [("prompt", "a phoenix"), ("exp", "1000")])
    refused(fetch(site.app, url), "URL_EXPIRED")
    respelled = url.replace("&exp=1000", f"&{name}=1000")
    assert respelled != url
    refused(fetch(site.app, respelled), "URL_EXPIRED")
    # nor does a sig under another spelling of its name serve it
    resigned = url.replace("&sig=", "&%73ig=")
    assert fetch(site.app, resigned).status_code == 403


@pytest.mark.parametrize("exp", ["soon", "-5", "1.5", "", " 1", "9" * 20, "١٢٣"])
def test_a_signed_exp_that_is_not_unix_seconds_is_a_400(site: Site, exp: str) -> None:
    site.set_mode("live")
    url = signed_query(site.secret(), site.live(), [("prompt", "a clock"), ("exp", exp)])
    error = assert_error(fetch(site.app, url), 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "exp"}
    # unsigned, or signed otherwise, it is the signature that is wrong
    refused(fetch(site.app, replace_param(url, "sig", "AAAA")))


def test_an_unsigned_exp_is_just_a_parameter_where_nothing_is_signed(site: Site) -> None:
    assert_image(fetch(site.app, f"{site.live()}?prompt=a+clock&exp=1"))


# --------------------------------------------------------------------------- rotation


def iso_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_rotation_keeps_the_previous_secret_for_the_grace_period(site: Site) -> None:
    app = site.app
    site.set_mode("live")
    old = site.secret()
    path = site.live("rotate")
    published = signed_query(old, path, [("prompt", "a windmill")])
    assert_image(fetch(app, published))
    unseen = signed_query(old, path, [("prompt", "a watermill")])

    rotated = site.rotate()
    new = rotated["secret"]
    assert new != old
    assert site.secret() == new
    until = iso_seconds(rotated["previousValidUntil"])
    assert until - time.time() == pytest.approx(DAY, abs=60)

    assert_image(fetch(app, published))  # already cached, still checked, still good
    assert_image(fetch(app, unseen))  # a miss signed with the old secret
    assert_image(fetch(app, signed_query(new, path, [("prompt", "a windmill")])))
    assert_image(fetch(app, signed_query(new, path, [("prompt", "a sawmill")])))
    # a second rotation within the grace period: every secret of the day still works
    newest = site.rotate()["secret"]
    assert newest not in (old, new)
    for secret in (old, new, newest):
        assert_image(fetch(app, signed_query(secret, path, [("prompt", "a windmill")])))
    # and a made-up secret does not
    refused(fetch(app, signed_query("11" * 32, path, [("prompt", "a windmill")])))


# --------------------------------------------------------------------------- projects apart


def test_a_secret_signs_only_its_own_project(module_app: Running) -> None:
    first, second = new_site(module_app), new_site(module_app, org="elsewhere")
    first_secret, second_secret = first.secret(), second.secret()
    assert first_secret != second_secret
    pairs = [("prompt", "a harbour")]
    for mode in ("off", "live"):
        second.set_mode(mode)
        refused(fetch(module_app, signed_query(first_secret, second.live(), pairs)))
        assert_image(fetch(module_app, signed_query(second_secret, second.live(), pairs)))
    # the same scope and query signed for the first project is not valid for the second
    theirs = signed_query(first_secret, first.live(), pairs)
    refused(fetch(module_app, theirs.replace(first.live(), second.live())))


def test_signed_urls_route_signs_for_the_keys_project_only(module_app: Running) -> None:
    first, second = new_site(module_app), new_site(module_app)
    for path in (second.live(), second.img("x"), f"/api/images/{second.org}/{second.slug}/a/b.png"):
        response = first.call("POST", "/api/v1/signed-urls", json={"path": path})
        error = assert_error(response, 400, "VALIDATION_ERROR")
        assert error["details"] == {"field": "path"}


# ------------------------------------------------------------- POST /api/v1/signed-urls


def sign_with_api(site: Site, **body: Any) -> dict[str, Any]:
    response = site.call("POST", "/api/v1/signed-urls", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["success"] is True
    data: dict[str, Any] = answer["data"]
    return data


def test_signed_urls_route(site: Site) -> None:
    app = site.app
    site.set_mode("all")
    secret = site.secret()
    prompt = "a ship & a 'boat' + 100% (ünï) ✓ a=b"
    data = sign_with_api(
        site, path=site.live("api"), query={"prompt": prompt, "aspectRatio": "1:1"}
    )
    assert data["url"] == app.settings.public_base_url + data["path"]
    assert data["path"].startswith(site.live("api") + "?")
    assert data.get("expiresAt") is None
    assert "exp" not in dict(parse_qsl(urlsplit(data["path"]).query))
    first = fetch(app, data["path"])
    assert_image(first)
    assert first.headers["x-cache-status"] == "MISS"
    # the same signature as the rules give, and the prompt arrives as it was given
    pairs = parse_qsl(urlsplit(data["path"]).query)
    assert dict(pairs)["prompt"] == prompt
    assert pairs[-1] == ("sig", reference_sign(secret, site.live("api"), pairs[:-1]))
    images = site.call("GET", "/api/v1/generations").json()["data"]
    assert any(generation["originalPrompt"] == prompt for generation in images)

    timed = sign_with_api(site, path=site.live("api"), query={"prompt": "x"}, expiresIn=3600)
    exp = int(param(timed["path"], "exp"))
    assert exp - time.time() == pytest.approx(3600, abs=5)
    assert iso_seconds(timed["expiresAt"]) == pytest.approx(exp, abs=1)
    assert_image(fetch(app, timed["path"]))

    image = site.upload(alias="@api")
    for ref in (image, "@api", "%40api"):
        signed = sign_with_api(site, path=site.img(ref), query={"w": "2"})
        assert_image(fetch(app, signed["path"]))
        bare = sign_with_api(site, path=site.img(ref))
        assert bare["path"].count("?") == 1
        assert_image(fetch(app, bare["path"]))
    # a sig or exp passed in the query is replaced, never trusted
    replaced = sign_with_api(site, path=site.img(image), query={"sig": "x"}, expiresIn=60)
    fields = parse_qsl(urlsplit(replaced["path"]).query)
    assert [name for name, _ in fields].count("sig") == 1
    assert_image(fetch(app, replaced["path"]))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "path"),
        ({"path": ""}, "path"),
        ({"path": "/api/v1/images"}, "path"),
        ({"path": "/cdn/{org}/{slug}/live/"}, "path"),
        ({"path": "/cdn/{org}/{slug}/img/"}, "path"),
        ({"path": "/cdn/{org}/{slug}/live/main?prompt=x"}, "path"),
        ({"path": "https://example.com/cdn/{org}/{slug}/live/main"}, "path"),
        ({"path": "/cdn/default/default/live/main"}, "path"),
        ({"path": "/cdn/{org}/{slug}/live/main", "query": {"prompt": 5}}, "query"),
        ({"path": "/cdn/{org}/{slug}/live/main", "query": ["prompt"]}, "query"),
        ({"path": "/cdn/{org}/{slug}/live/main", "expiresIn": 0}, "expiresIn"),
        ({"path": "/cdn/{org}/{slug}/live/main", "expiresIn": "60"}, "expiresIn"),
    ],
)
def test_signed_urls_route_refuses_bad_input(site: Site, body: dict[str, Any], field: str) -> None:
    if "path" in body:
        body = {**body, "path": body["path"].format(org=site.org, slug=site.slug)}
    response = site.call("POST", "/api/v1/signed-urls", json=body)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    details = error.get("details")
    assert isinstance(details, dict)
    assert str(details["field"]).startswith(field), details


def test_signed_urls_route_needs_the_project_key(module_app: Running) -> None:
    path = "/cdn/default/default/live/main"
    anonymous = module_app.client.post("/api/v1/signed-urls", json={"path": path})
    assert_error(anonymous, 401, "MISSING_API_KEY")
    master = module_app.admin("POST", "/api/v1/signed-urls", json={"path": path})
    assert_error(master, 403, "FORBIDDEN")


# --------------------------------------------------------------------------- order of checks


@pytest.mark.parametrize(
    "query",
    [
        "",
        "prompt=",
        "prompt=%20%20",
        "prompt=x&aspectRatio=7:3",
        "prompt=x&autoEnhance=maybe",
        "prompt=x&template=nope",
        "prompt=x&w=0",
        "prompt=x&format=gif",
        "prompt=" + "x" * 5000,
        "prompt=%FF%FE",
    ],
)
def test_a_required_signature_is_checked_before_the_query(site: Site, query: str) -> None:
    site.set_mode("live")
    path = site.live()
    unsigned = f"{path}?{query}" if query else path
    refused(fetch(site.app, unsigned))
    refused(fetch(site.app, f"{path}?{query}&sig=AAAA"))
    # signed, the same query is judged on its merits
    pairs = parse_qsl(query, keep_blank_values=True)
    if all(value.isascii() for _, value in pairs):
        signed = signed_query(site.secret(), path, pairs)
        response = fetch(site.app, signed)
        assert response.status_code == 400, response.text


def test_scope_rules_come_after_the_signature(site: Site) -> None:
    site.call("PUT", "/api/v1/project", json={"allowNewLiveScopes": False})
    site.set_mode("live")
    refused(fetch(site.app, f"{site.live('unknown')}?prompt=x"))
    response = fetch(site.app, signed_query(site.secret(), site.live("unknown"), [("prompt", "x")]))
    assert response.status_code == 403
    assert response.json()["error"]["code"] != "INVALID_SIGNATURE"


def test_a_missing_image_in_all_mode_is_403_unsigned_and_404_signed(site: Site) -> None:
    site.set_mode("all")
    refused(fetch(site.app, site.img("00000000-0000-4000-8000-000000000000")))
    signed = signed_query(site.secret(), site.img("00000000-0000-4000-8000-000000000000"), [])
    assert_error(fetch(site.app, signed), 404, "IMAGE_NOT_FOUND")


def test_an_unknown_project_is_404_with_or_without_a_signature(module_app: Running) -> None:
    path = "/cdn/nobody/nothing/live/main"
    assert fetch(module_app, f"{path}?prompt=x").status_code == 404
    assert fetch(module_app, f"{path}?prompt=x&sig=AAAA").status_code == 404


# --------------------------------------------------------------------------- the JavaScript signer

NODE_HARNESS = """
const cases = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(cases.map(([secret, url]) => signUrl(secret, url))));
"""

TRICKY_URLS = [
    "/cdn/default/default/live/hero?prompt=a%20lighthouse%20at%20dusk",
    "/cdn/default/default/live/hero?prompt=1%2B1%3D2%20%26%20more",
    "/cdn/default/default/live/hero?prompt=caf%C3%A9%20%E2%9C%93%20%F0%9F%8C%8A",
    "/cdn/default/default/live/hero?prompt=it's%20(nearly)%20done!%20*",
    "/cdn/default/default/live/hero?prompt=tilde~%7E&aspectRatio=1:1&autoEnhance=false",
    "/cdn/default/default/live/hero?b=2&a=3&b=1&a=&prompt=x",
    "/cdn/default/default/live/hero?prompt=x&flag",
    "/cdn/default/default/live/hero?prompt=%zz%25&x=%",
    "/cdn/default/default/live/hero?prompt=x&exp=1999999999",
    "/cdn/default/default/img/@hero",
    "/cdn/default/default/img/@hero?w=100&format=webp",
    "https://images.example.com/cdn/default/default/live/hero?prompt=a+b",
    "/cdn/default/default/live/hero?pr%6Fmpt=x&%C3%A9=%C3%A9",
]
# other spellings of some of them: they must sign alike
SAME_AS = {
    "/cdn/default/default/live/hero?prompt=a+lighthouse+at+dusk": 0,
    "/cdn/default/default/live/hero?prompt=it%27s%20%28nearly%29%20done%21%20%2A": 3,
    "/cdn/default/default/live/hero?prompt=tilde%7E~&autoEnhance=false&aspectRatio=1%3A1": 4,
    "/cdn/default/default/live/hero?b=1&prompt=x&a=&b=2&a=3": 5,
    "/cdn/default/default/img/%40hero": 9,
    "/cdn/default/default/live/hero?prompt=a%20b": 11,
    "/cdn/default/default/live/hero?prompt=x&%C3%A9=%c3%a9": 12,
}


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node") or shutil.which("nodejs")
    if found is None:
        pytest.skip("node is not installed: the README's JavaScript signer cannot be run")
    return found


def run_js_signer(node: str, tmp_path: Path, cases: list[tuple[str, str]]) -> list[str]:
    script = tmp_path / "sign.js"
    script.write_text(readme_block("js", "function signUrl") + NODE_HARNESS, encoding="utf-8")
    done = subprocess.run(
        [node, str(script)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out: list[str] = json.loads(done.stdout)
    return out


def test_the_readme_javascript_signer_agrees_with_python(
    node: str, tmp_path: Path, readme_sign_url: Signer
) -> None:
    secret = "a1" * 32
    urls = [*TRICKY_URLS, *SAME_AS]
    signed = run_js_signer(node, tmp_path, [(secret, url) for url in urls])
    for url, by_js in zip(urls, signed, strict=True):
        assert by_js == readme_sign_url(secret, url), url
        assert by_js.startswith(url)
    sigs = [param(url, "sig") for url in signed]
    assert len(set(sigs[: len(TRICKY_URLS)])) == len(TRICKY_URLS)  # different URLs differ
    for sig, index in zip(sigs[len(TRICKY_URLS) :], SAME_AS.values(), strict=True):
        assert sig == sigs[index]


def test_the_server_accepts_what_the_javascript_signer_signs(
    node: str, tmp_path: Path, site: Site
) -> None:
    app = site.app
    site.set_mode("all")
    secret = site.secret()
    site.upload(alias="@js")
    urls = [
        f"{site.live('js')}?prompt=it's%20(nearly)%20done!%20*%20~%20caf%C3%A9",
        f"{site.live('js')}?aspectRatio=1:1&prompt=a+b+c&w=4&format=png",
        f"{site.img('@js')}?w=2",
        site.img("%40js"),
    ]
    for url in run_js_signer(node, tmp_path, [(secret, url) for url in urls]):
        assert_image(fetch(app, url))


def test_the_readme_documents_the_mode_and_the_secret() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Signed URLs", 1)[1].split("\n### ", 1)[0]
    for needle in (
        '{"signedUrls": "live"}',
        "projects update default/default --signed-urls live",
        "banatie-local projects signing-secret default/default",
        "GET /api/v1/project/signing-secret",
        "POST /api/v1/signed-urls",
        "URL_EXPIRED",
        "cdn.signature_grace_seconds",
    ):
        assert needle in section, needle


# --------------------------------------------------------------------------- the CLI


def cli(app: Running, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``banatie-local ARGS`` in a process of its own on the appliance's data dir, as
    beside a running server (the models are bound to one database per process, so
    the in-process runner would take the shared appliance's database away)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("BANATIE_") and name not in ("GEMINI_API_KEY", "OPENAI_API_KEY")
    }
    command = [sys.executable, "-m", "banatie_local", *args]
    command += ["--data-dir", str(app.settings.data_dir)]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def cli_output(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_cli_signs_urls_the_server_accepts(
    module_app: Running, tmp_path: Path, run_cli: Callable[..., Result]
) -> None:
    site = new_site(module_app)
    project = f"{site.org}/{site.slug}"
    site.set_mode("live")
    secret = site.secret()
    assert cli_output(cli(module_app, tmp_path, "projects", "signing-secret", project)) == secret

    printed = cli_output(cli(module_app, tmp_path, "sign-url", f"{site.live('cli')}?prompt=a b+c"))
    assert printed.startswith("http://127.0.0.1:3000/cdn/")  # server.public_base_url
    relative = printed.removeprefix("http://127.0.0.1:3000")
    assert param(relative, "prompt") == "a b c"
    assert_image(fetch(module_app, relative))

    whole = f"https://img.example.com{site.live('cli')}?prompt=timed"
    answer = json.loads(
        cli_output(cli(module_app, tmp_path, "sign-url", whole, "--expires-in", "120", "--json"))
    )
    assert answer["url"].startswith(whole + "&")
    exp = int(param(answer["url"], "exp"))
    assert exp - time.time() == pytest.approx(120, abs=5)
    assert iso_seconds(answer["expiresAt"]) == pytest.approx(exp, abs=1)
    assert_image(fetch(module_app, answer["url"].removeprefix("https://img.example.com")))

    # a path of another project than --project names is refused
    other = "/cdn/default/default/live/x?prompt=y"
    mismatch = cli(module_app, tmp_path, "sign-url", other, "--project", project)
    assert mismatch.returncode != 0
    assert "path" in mismatch.stderr
    # a path that names no project stops before the database is opened
    nowhere = run_cli("sign-url", "/somewhere?prompt=x", "--data-dir", str(tmp_path / "none"))
    assert nowhere.exit_code == 2
    assert "--project" in nowhere.output
    assert not (tmp_path / "none").exists()


def test_cli_mode_and_rotation_reach_the_running_server(
    module_app: Running, tmp_path: Path
) -> None:
    site = new_site(module_app)
    project = f"{site.org}/{site.slug}"
    image = site.upload()
    assert_image(fetch(module_app, site.img(image)))
    update = ["projects", "update", project, "--signed-urls", "all", "--json"]
    updated = json.loads(cli_output(cli(module_app, tmp_path, *update)))
    assert updated["signedUrls"] == "all"
    # another process's change reaches the server through the change feed
    assert eventually(lambda: fetch(module_app, site.img(image)).status_code == 403)
    assert site.mode() == "all"

    old = site.secret()
    rotate = ["projects", "signing-secret", project, "--rotate", "--json"]
    rotated = json.loads(cli_output(cli(module_app, tmp_path, *rotate)))
    assert rotated["secret"] != old
    assert iso_seconds(rotated["previousValidUntil"]) - time.time() == pytest.approx(DAY, abs=60)
    new_url = signed_query(rotated["secret"], site.img(image), [])
    assert eventually(lambda: fetch(module_app, new_url).status_code == 200)
    assert_image(fetch(module_app, signed_query(old, site.img(image), [])))
    assert site.secret() == rotated["secret"]


# --------------------------------------------------------------------------- own appliances
# Last: the models are bound to one database per process (db/connection.py), so
# starting another appliance leaves the shared one unusable for the tests after it.


def test_rotation_without_grace_ends_the_old_secret_at_once(start_server: Start) -> None:
    app = start_server(cdn__signature_grace_seconds=0)
    site = Site(app, "default", "default", app.project_key or "")
    site.set_mode("live")
    old = site.secret()
    path = site.live("rotate")
    published = signed_query(old, path, [("prompt", "a windmill")])
    assert_image(fetch(app, published))
    rotated = site.rotate()
    assert iso_seconds(rotated["previousValidUntil"]) == pytest.approx(time.time(), abs=60)
    refused(fetch(app, published))
    refused(fetch(app, signed_query(old, path, [("prompt", "a watermill")])))
    assert_image(fetch(app, signed_query(rotated["secret"], path, [("prompt", "a windmill")])))


def test_signed_live_urls_are_exempt_from_the_ip_limit_not_from_scope_limits(
    start_server: Start,
) -> None:
    app = start_server(live__new_generations_per_ip_per_hour=1, live__ip_limit_exempt=[])
    site = Site(app, "default", "default", app.project_key or "")
    secret = site.secret()
    assert site.mode() == "off"
    path = site.live()
    assert_image(fetch(app, f"{path}?prompt=one"))
    assert_error(fetch(app, f"{path}?prompt=two"), 429, "RATE_LIMIT_EXCEEDED")
    for prompt in ("three", "four", "five"):
        response = fetch(app, signed_query(secret, path, [("prompt", prompt)]))
        assert_image(response)
        assert response.headers["x-cache-status"] == "MISS"
    # the signed misses used none of the address's budget, which is still spent
    assert_error(fetch(app, f"{path}?prompt=six"), 429, "RATE_LIMIT_EXCEEDED")
    # a wrong signature is refused as such, not counted as an unsigned request
    refused(fetch(app, f"{path}?prompt=seven&sig=wrong"))
    # required signatures: the same
    site.set_mode("live")
    assert_image(fetch(app, signed_query(secret, path, [("prompt", "eight")])))
    # the scope's own limit still holds for signed URLs
    created = site.call(
        "POST", "/api/v1/live/scopes", json={"slug": "small", "newGenerationsLimit": 1}
    )
    assert created.status_code == 201, created.text
    small = site.live("small")
    assert_image(fetch(app, signed_query(secret, small, [("prompt", "nine")])))
    assert_error(
        fetch(app, signed_query(secret, small, [("prompt", "ten")])),
        429,
        "SCOPE_GENERATION_LIMIT_EXCEEDED",
    )
