"""Optional C2PA manifests (API.md §14): signed PNG/JPEG/WebP read back with c2pa's own
Reader; every bad certificate or key setting stops startup with one ``ConfigError``.

The certificates are made here: a small CA and an end-entity certificate it issued
(c2pa-rs refuses a self-signed signing certificate, and one without key usage
digitalSignature or extended key usage emailProtection)."""

# ruff: noqa: E402  (the imports below pytest.importorskip need c2pa's dependencies)
from __future__ import annotations

import datetime as dt
import io
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

c2pa = pytest.importorskip("c2pa")

from cryptography import x509  # c2pa-python depends on it
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

from banatie_local.config import ConfigError
from banatie_local.services.c2pa_signing import (
    ALGORITHMIC_MEDIA,
    TRAINED_ALGORITHMIC_MEDIA,
    C2paError,
    ManifestSigner,
    load_signer,
)
from tests.imagedata import jpeg_bytes, png_bytes, webp_bytes

GENERATOR = "banatie-local 0.9.0"
NOW = dt.datetime.now(dt.UTC)
EMAIL_PROTECTION = (ExtendedKeyUsageOID.EMAIL_PROTECTION,)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "banatie-local tests"),
        ]
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _certificate(
    subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool, eku: tuple[Any, ...] = ()
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(_key_usage(ca=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if issuer_key is not key:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
        builder = builder.add_extension(aki, critical=False)
    # Ed25519 signs without a separate hash; the others take SHA-256.
    digest = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(issuer_key, digest)


def _pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _key_pem(
    key: Any, fmt: Any = serialization.PrivateFormat.PKCS8, password: bytes = b""
) -> bytes:
    encryption: Any = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return bytes(key.private_bytes(serialization.Encoding.PEM, fmt, encryption))


@dataclass(frozen=True)
class Credentials:
    certificate: str  # chain: end entity first, then the CA
    private_key: str


def _credentials(
    directory: Path, key: Any, *, eku: tuple[Any, ...] = EMAIL_PROTECTION
) -> Credentials:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Test CA", ca_key, "Test CA", ca_key, ca=True)
    leaf = _certificate("Test signer", key, "Test CA", ca_key, ca=False, eku=eku)
    directory.mkdir(parents=True, exist_ok=True)
    certificate, private_key = directory / "chain.pem", directory / "key.pem"
    certificate.write_bytes(_pem(leaf, ca))
    private_key.write_bytes(_key_pem(key))
    return Credentials(str(certificate), str(private_key))


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    return _credentials(tmp_path_factory.mktemp("c2pa"), ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="module")
def signer(credentials: Credentials) -> ManifestSigner:
    return load_signer(credentials.certificate, credentials.private_key)


def _read(data: bytes, mime: str) -> dict[str, Any]:
    with c2pa.Reader(mime, io.BytesIO(data)) as reader:
        return {
            "manifest": reader.get_active_manifest(),
            "state": reader.get_validation_state(),
            "results": reader.get_validation_results()["activeManifest"],
        }


def _codes(results: dict[str, Any], kind: str) -> set[str]:
    return {entry["code"] for entry in results.get(kind, [])}


def _source_types(manifest: dict[str, Any]) -> list[tuple[str, str | None]]:
    (actions,) = [a for a in manifest["assertions"] if a["label"].startswith("c2pa.actions")]
    return [(a["action"], a.get("digitalSourceType")) for a in actions["data"]["actions"]]


FORMATS = [
    pytest.param(png_bytes(64, 48), "image/png", id="png"),
    pytest.param(jpeg_bytes(64, 48), "image/jpeg", id="jpeg"),
    pytest.param(webp_bytes(64, 48), "image/webp", id="webp"),
]


@pytest.mark.parametrize(("data", "mime"), FORMATS)
def test_signed_image_carries_a_valid_manifest(
    signer: ManifestSigner, data: bytes, mime: str
) -> None:
    signed = signer.sign(data, mime, ai_model=True, generator=GENERATOR, title="A red fox")

    read = _read(signed, mime)
    manifest = read["manifest"]
    assert manifest is not None
    assert manifest["claim_generator_info"][0]["name"] == "banatie-local"
    assert manifest["claim_generator_info"][0]["version"] == "0.9.0"
    assert manifest["title"] == "A red fox"
    assert _source_types(manifest) == [("c2pa.created", TRAINED_ALGORITHMIC_MEDIA)]
    assert "thumbnail" not in manifest  # switched off: the image is its own thumbnail
    # Integrity: c2pa reports the claim signature validated (and made while the
    # certificate was valid), every assertion's hashed URI matched and the data hash over
    # the file's bytes matched. The one failure is trust: the test CA is in no trust
    # list, which c2pa reports as signingCredential.untrusted while the overall state
    # stays "Valid" (a trusted signer would make it "Trusted"; broken bytes "Invalid").
    results = read["results"]
    assert {
        "claimSignature.validated",
        "claimSignature.insideValidity",
        "assertion.hashedURI.match",
        "assertion.dataHash.match",
    } <= _codes(results, "success")
    assert _codes(results, "failure") == {"signingCredential.untrusted"}
    assert read["state"] == "Valid"
    # The image itself is unchanged: it decodes, with the same pixels.
    with Image.open(io.BytesIO(signed)) as image, Image.open(io.BytesIO(data)) as original:
        assert image.size == (64, 48)
        assert image.convert("RGB").tobytes() == original.convert("RGB").tobytes()


def test_a_changed_byte_breaks_the_data_hash(signer: ManifestSigner) -> None:
    data = png_bytes(64, 48)
    signed = bytearray(
        signer.sign(data, "image/png", ai_model=True, generator=GENERATOR, title="t")
    )
    idat = signed.index(b"IDAT")
    signed[idat + 8] ^= 0xFF
    read = _read(bytes(signed), "image/png")
    assert read["state"] == "Invalid"
    assert "assertion.dataHash.mismatch" in _codes(read["results"], "failure")


def test_without_an_ai_model_the_source_is_algorithmic_media(signer: ManifestSigner) -> None:
    signed = signer.sign(png_bytes(), "image/png", ai_model=False, generator=GENERATOR, title="t")
    read = _read(signed, "image/png")
    assert _source_types(read["manifest"]) == [("c2pa.created", ALGORITHMIC_MEDIA)]
    assert read["state"] == "Valid"


@pytest.mark.parametrize(
    ("make_key", "algorithm"),
    [
        pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), "es384", id="p384"),
        pytest.param(ed25519.Ed25519PrivateKey.generate, "ed25519", id="ed25519"),
        pytest.param(lambda: rsa.generate_private_key(65537, 2048), "ps256", id="rsa"),
    ],
)
def test_the_algorithm_follows_the_key(tmp_path: Path, make_key: Any, algorithm: str) -> None:
    credentials = _credentials(tmp_path, make_key())
    signer = load_signer(credentials.certificate, credentials.private_key)
    assert signer.algorithm == algorithm
    signed = signer.sign(jpeg_bytes(), "image/jpeg", ai_model=True, generator=GENERATOR, title="t")
    assert _read(signed, "image/jpeg")["state"] == "Valid"


def test_an_ec_key_in_sec1_form_is_accepted(tmp_path: Path, credentials: Credentials) -> None:
    # c2pa-rs reads only PKCS#8; `openssl ecparam -genkey` writes "BEGIN EC PRIVATE KEY".
    key = serialization.load_pem_private_key(Path(credentials.private_key).read_bytes(), None)
    sec1 = tmp_path / "sec1.pem"
    sec1.write_bytes(_key_pem(key, serialization.PrivateFormat.TraditionalOpenSSL))
    assert b"BEGIN EC PRIVATE KEY" in sec1.read_bytes()
    assert load_signer(credentials.certificate, str(sec1)).algorithm == "es256"


def test_a_key_of_another_certificate_is_refused(tmp_path: Path, credentials: Credentials) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(ConfigError, match="does not belong to the certificate") as caught:
        load_signer(credentials.certificate, str(other))
    assert "metadata.c2pa_private_key" in str(caught.value)


def test_the_signing_certificate_must_come_first(tmp_path: Path, credentials: Credentials) -> None:
    pem = Path(credentials.certificate).read_bytes()
    leaf, ca = x509.load_pem_x509_certificates(pem)
    reversed_chain = tmp_path / "reversed.pem"
    reversed_chain.write_bytes(_pem(ca, leaf))
    with pytest.raises(ConfigError, match="must come first"):
        load_signer(str(reversed_chain), credentials.private_key)


@pytest.mark.parametrize("setting", ["metadata.c2pa_certificate", "metadata.c2pa_private_key"])
def test_an_unreadable_file_names_the_setting(
    tmp_path: Path, credentials: Credentials, setting: str
) -> None:
    missing = str(tmp_path / "missing.pem")
    paths = (
        (missing, credentials.private_key)
        if setting == "metadata.c2pa_certificate"
        else (credentials.certificate, missing)
    )
    with pytest.raises(ConfigError) as caught:
        load_signer(*paths)
    assert str(caught.value) == f"{setting} ({missing}) cannot be read: No such file or directory."


def test_one_setting_without_the_other_is_refused(credentials: Credentials) -> None:
    with pytest.raises(ConfigError, match="must be set together"):
        load_signer(credentials.certificate, "")


def test_a_file_without_a_certificate_is_refused(credentials: Credentials) -> None:
    with pytest.raises(ConfigError, match=r"metadata\.c2pa_certificate .* holds no PEM"):
        load_signer(credentials.private_key, credentials.private_key)


def test_an_encrypted_key_is_refused(tmp_path: Path, credentials: Credentials) -> None:
    key = serialization.load_pem_private_key(Path(credentials.private_key).read_bytes(), None)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(_key_pem(key, password=b"secret"))
    with pytest.raises(ConfigError, match="is encrypted"):
        load_signer(credentials.certificate, str(encrypted))


def test_a_key_type_c2pa_cannot_use_is_refused(tmp_path: Path) -> None:
    credentials = _credentials(tmp_path, ec.generate_private_key(ec.SECP256K1()))
    with pytest.raises(ConfigError, match="a kind of key C2PA cannot sign with"):
        load_signer(credentials.certificate, credentials.private_key)


@pytest.mark.parametrize(
    "eku",
    [
        pytest.param((), id="no-extended-key-usage"),
        pytest.param((ExtendedKeyUsageOID.SERVER_AUTH,), id="tls"),
    ],
)
def test_a_certificate_c2pa_refuses_fails_at_load(tmp_path: Path, eku: tuple[Any, ...]) -> None:
    credentials = _credentials(tmp_path, ec.generate_private_key(ec.SECP256R1()), eku=eku)
    with pytest.raises(ConfigError, match=r"cannot sign C2PA manifests .*emailProtection"):
        load_signer(credentials.certificate, credentials.private_key)


def test_a_self_signed_certificate_fails_at_load(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate("Me", key, "Me", key, ca=False, eku=EMAIL_PROTECTION)
    (tmp_path / "chain.pem").write_bytes(_pem(leaf))
    (tmp_path / "key.pem").write_bytes(_key_pem(key))
    with pytest.raises(ConfigError, match="cannot sign C2PA manifests"):
        load_signer(str(tmp_path / "chain.pem"), str(tmp_path / "key.pem"))


def test_without_the_extra_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, credentials: Credentials
) -> None:
    monkeypatch.setitem(sys.modules, "c2pa", None)  # what `import c2pa` sees when it is absent
    with pytest.raises(ConfigError, match=r'pip install "banatie-local\[c2pa\]"') as caught:
        load_signer(credentials.certificate, credentials.private_key)
    assert str(caught.value).startswith("metadata.c2pa_certificate is set, but")


def test_a_file_c2pa_cannot_sign_raises_c2pa_error(signer: ManifestSigner) -> None:
    with pytest.raises(C2paError, match="image/png"):
        signer.sign(b"not an image", "image/png", ai_model=True, generator=GENERATOR, title="t")


def test_worker_threads_sign_concurrently(signer: ManifestSigner) -> None:
    images = [png_bytes(32, 32, (n, 0, 0)) for n in range(16)]

    def sign(data: bytes) -> str:
        signed = signer.sign(data, "image/png", ai_model=True, generator=GENERATOR, title="t")
        return str(_read(signed, "image/png")["state"])

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(sign, images)) == {"Valid"}


def test_signing_a_large_png_is_fast(signer: ManifestSigner) -> None:
    noise = Image.effect_noise((1024, 1024), 40).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    data = buffer.getvalue()
    assert len(data) > 1_000_000
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        signed = signer.sign(data, "image/png", ai_model=True, generator=GENERATOR, title="t")
        timings.append(time.perf_counter() - start)
    # ~3 ms measured; the manifest adds ~3 KB (a thumbnail would have added ~600 KB).
    assert min(timings) < 0.5
    assert len(signed) - len(data) < 16_000
