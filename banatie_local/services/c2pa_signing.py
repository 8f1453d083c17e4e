"""Optional C2PA manifests in generated images (API.md §14), through ``c2pa-python``.

The library is the optional extra ``banatie-local[c2pa]`` (a 16 MB native wheel, left
out of the single-file binary), so it is imported only when the two settings
``metadata.c2pa_certificate`` and ``metadata.c2pa_private_key`` are set. ``load_signer``
checks everything once at startup (the files, the key type, that the key belongs to the
certificate, that c2pa accepts the certificate, by signing a one-pixel probe) and
turns every problem into one ``ConfigError`` sentence.

A manifest binds the exact bytes by hash, so signing must be the last change to a file:
the XMP marking (``provenance.mark``) goes first, and any later rewrite (a variant, a
re-encode) drops or breaks it. c2pa's thumbnail is switched off: the image is its own
thumbnail, and c2pa's default one added 600 KB to a 2 MB PNG and 50 ms to its signing.

Thread safety: c2pa's objects are bound to the process that made them (a forked worker
sees them closed) and a Builder signs once, so ``ManifestSigner`` keeps only bytes and
makes its Settings, Context, Signer and Builder per call (together well under 1 ms).
``sign`` can therefore run in any worker thread or process, concurrently.
"""

from __future__ import annotations

import datetime as dt
import importlib
import io
from pathlib import Path
from typing import Any, Final

from banatie_local.config import ConfigError

CERTIFICATE_SETTING: Final = "metadata.c2pa_certificate"
PRIVATE_KEY_SETTING: Final = "metadata.c2pa_private_key"
TRAINED_ALGORITHMIC_MEDIA: Final = (
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
)
ALGORITHMIC_MEDIA: Final = "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia"
# c2pa-rs settings: no thumbnail (see above); verify each manifest right after signing,
# so a file that would not validate is never returned (it costs ~0.5 ms per image).
_C2PA_SETTINGS: Final = {
    "builder": {"thumbnail": {"enabled": False}},
    "verify": {"verify_after_sign": True},
}
_CERTIFICATE_RULES: Final = (
    "C2PA needs an X.509 v3 end-entity certificate that is not self-signed, with key usage"
    " digitalSignature and extended key usage emailProtection, first in the file and"
    " followed by the CA certificate(s) that issued it"
)


class C2paError(Exception):
    """Signing one image failed (the settings were fine at startup); one sentence."""


class ManifestSigner:
    """Signs C2PA manifests into images with one certificate and key (from ``load_signer``)."""

    def __init__(self, c2pa: Any, algorithm: str, chain_pem: bytes, key_pem: bytes) -> None:
        self._c2pa = c2pa  # the c2pa module: untyped, hence Any
        self.algorithm = algorithm  # "es256", "es384", "es512", "ps256" or "ed25519"
        self._chain_pem = chain_pem
        self._key_pem = key_pem  # PKCS#8, unencrypted: the only form c2pa-rs reads

    def sign(self, data: bytes, mime: str, *, ai_model: bool, generator: str, title: str) -> bytes:
        """``data`` with an embedded, signed manifest that names ``generator``
        ("banatie-local 0.9.0") and marks the image as made by an AI model
        (``ai_model``) or by an algorithm alone. CPU-bound: call it off the event loop."""
        c2pa = self._c2pa
        out = io.BytesIO()
        info = c2pa.C2paSignerInfo(self.algorithm.encode(), self._chain_pem, self._key_pem, None)
        try:
            with (
                c2pa.Settings.from_dict(_C2PA_SETTINGS) as settings,
                c2pa.Context(settings=settings) as context,
                c2pa.Signer.from_info(info) as signer,
                c2pa.Builder(_manifest(ai_model, generator, title), context) as builder,
            ):
                builder.sign(signer, mime, io.BytesIO(data), out)
        except c2pa.C2paError as exc:
            raise C2paError(f"C2PA signing of an {mime} image failed: {exc}") from exc
        return out.getvalue()


def _manifest(ai_model: bool, generator: str, title: str) -> dict[str, Any]:
    name, sep, version = generator.rpartition(" ")
    if not sep or not version[:1].isdigit():
        name, version = generator, ""
    agent = {"name": name, "version": version} if version else {"name": name}
    source = TRAINED_ALGORITHMIC_MEDIA if ai_model else ALGORITHMIC_MEDIA
    created = {"action": "c2pa.created", "digitalSourceType": source, "softwareAgent": agent}
    return {
        "claim_generator_info": [agent],
        "title": title,
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [created]}}],
    }


def load_signer(certificate_path: str, private_key_path: str) -> ManifestSigner:
    """The signer the two settings describe, checked; ``ConfigError`` (one sentence naming
    the setting) when the extra is missing or a file is unreadable, mismatched or refused."""
    if not certificate_path or not private_key_path:
        raise ConfigError(f"{CERTIFICATE_SETTING} and {PRIVATE_KEY_SETTING} must be set together.")
    try:
        c2pa = importlib.import_module("c2pa")
    except (ImportError, OSError) as exc:  # OSError: the native library did not load
        raise ConfigError(
            f"{CERTIFICATE_SETTING} is set, but the C2PA support is not installed ({exc});"
            ' install it with: pip install "banatie-local[c2pa]".'
        ) from exc
    # c2pa-python depends on cryptography, so it is here whenever c2pa is.
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    chain_pem = _read(CERTIFICATE_SETTING, certificate_path)
    key_pem = _read(PRIVATE_KEY_SETTING, private_key_path)
    where_cert = f"{CERTIFICATE_SETTING} ({certificate_path})"
    where_key = f"{PRIVATE_KEY_SETTING} ({private_key_path})"
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise ConfigError(
            f"{where_cert} holds no PEM certificate (a -----BEGIN CERTIFICATE----- block)."
        ) from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError as exc:  # encrypted: there is no setting for a passphrase
        raise ConfigError(f"{where_key} is encrypted; give an unencrypted PEM key.") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{where_key} holds no readable PEM private key: {exc}.") from exc
    algorithm = _algorithm(key, where_key)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ours = key.public_key().public_bytes(*spki)
    holders = [n for n, cert in enumerate(chain) if cert.public_key().public_bytes(*spki) == ours]
    if not holders:
        raise ConfigError(f"{where_key} does not belong to the certificate in {where_cert}.")
    if holders[0] != 0:
        raise ConfigError(
            f"{where_key} belongs to certificate {holders[0] + 1} in {where_cert}, but the"
            " signing certificate must come first in the file."
        )
    now = dt.datetime.now(dt.UTC)
    if not chain[0].not_valid_before_utc <= now <= chain[0].not_valid_after_utc:
        raise ConfigError(
            f"the certificate in {where_cert} is valid only from"
            f" {chain[0].not_valid_before_utc:%Y-%m-%d} to {chain[0].not_valid_after_utc:%Y-%m-%d}."
        )
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signer = ManifestSigner(c2pa, algorithm, chain_pem, pkcs8)
    try:  # c2pa-rs checks the certificate's profile only when it signs
        signer.sign(_probe_png(), "image/png", ai_model=True, generator="probe", title="probe")
    except C2paError as exc:
        raise ConfigError(
            f"{where_cert} cannot sign C2PA manifests ({exc.__cause__}): {_CERTIFICATE_RULES}."
        ) from exc
    return signer


def _read(setting: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting} ({path}) cannot be read: {exc.strerror or exc}.") from exc


def _algorithm(key: Any, where: str) -> str:
    """c2pa's name for the signature algorithm ``key`` makes (a cryptography key)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return "ps256"  # c2pa allows RSA only with PSS padding
    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in by_curve:
            return by_curve[key.curve.name]
    raise ConfigError(
        f"{where} is a kind of key C2PA cannot sign with; use an EC key on P-256, P-384 or"
        " P-521, an Ed25519 key, or an RSA key of at least 2048 bits."
    )


def _probe_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    return buffer.getvalue()
