"""``scripts/build-binary.sh`` refuses to build without the package's dependencies,
with a sentence that says what to install, instead of a binary that cannot start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_without_the_dependencies_the_build_stops_with_a_clear_sentence(tmp_path: Path) -> None:
    bare = tmp_path / "bare"  # a Python with nothing installed
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    env = {**os.environ, "PATH": f"{bare / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-binary.sh")],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "dependencies are not installed" in done.stderr
    assert "pip install -e ." in done.stderr
    assert "Traceback" not in done.stderr
    assert "built dist/banatie-local" not in done.stdout  # PyInstaller never ran
