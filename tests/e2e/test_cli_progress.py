"""Long CLI work shows progress on stderr when stderr is a terminal, and nothing else
changes: with --json, or when stderr is a pipe, the output is as before. The commands
run as real processes with stderr on a pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.gemini import Answer, FakeGemini

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")


def environment(data_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BANATIE_", "GEMINI_"))}
    env["BANATIE_DATA_DIR"] = str(data_dir)
    env.update(settings)
    return env


def run(args: list[str], env: dict[str, str], cwd: Path, terminal: bool) -> tuple[int, str, str]:
    """The command's exit code, stdout, and stderr (read off a pseudo-terminal when
    ``terminal``)."""
    command = [sys.executable, "-m", "banatie_local", *args]
    if not terminal:
        done = subprocess.run(
            command, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
        )
        return done.returncode, done.stdout, done.stderr
    main, side = pty.openpty()
    proc = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=side, text=True
    )
    os.close(side)
    seen = bytearray()
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            proc.kill()
            raise AssertionError("the command hung")
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert proc.stdout is not None
    out = proc.stdout.read()
    return proc.wait(30), out, seen.decode(errors="replace")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    code, _, err = run(["init"], environment(folder), tmp_path, terminal=False)
    assert code == 0, err
    return folder


def test_generate_spins_on_a_terminal_while_the_provider_works(
    tmp_path: Path, data_dir: Path, fake_gemini: FakeGemini
) -> None:
    env = environment(
        data_dir,
        BANATIE_GENERATION_PROVIDER="gemini",
        BANATIE_GENERATION_GEMINI_API_KEY="k",
        BANATIE_GENERATION_GEMINI_BASE_URL=fake_gemini.url,
    )
    for terminal in (True, False):
        fake_gemini.queue(Answer("text", text="a slow ship"), Answer("image", delay=0.8))
        code, out, err = run(["generate", "a slow ship"], env, tmp_path, terminal)
        assert code == 0, err
        assert out.splitlines()[0].startswith("generation ")
        assert ("generating with gemini" in err) is terminal, err
    fake_gemini.queue(Answer("text", text="a slow boat"), Answer("image", delay=0.8))
    code, out, err = run(["generate", "a slow boat", "--json"], env, tmp_path, terminal=True)
    assert code == 0, err
    assert json.loads(out)["status"] == "success"
    assert "generating" not in err


def test_purge_shows_a_bar_on_a_terminal_only(tmp_path: Path, data_dir: Path) -> None:
    env = environment(data_dir)
    for terminal in (True, False):
        code, out, err = run(["purge", "cache"], env, tmp_path, terminal)
        assert code == 0, err
        assert out.startswith("purged ")
        assert ("Purging" in err) is terminal, err
    code, out, err = run(["purge", "orphans", "--grace", "0"], env, tmp_path, terminal=True)
    assert code == 0, err
    assert "removed 0 files without rows" in out
    assert "Removing" in err
