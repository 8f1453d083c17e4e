#!/usr/bin/env bash
# Builds dist/banatie-local, one self-contained executable (PyInstaller onefile).
# Needs the package's dependencies installed (pip install -e .) and PyInstaller
# (installed here if missing). Prints the size of the result.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m PyInstaller --version >/dev/null 2>&1 || python3 -m pip install -q "pyinstaller>=6.10"
python3 -m PyInstaller --noconfirm --clean --log-level WARN build.spec
size=$(stat -c %s dist/banatie-local)
echo "built dist/banatie-local: $((size / 1024 / 1024)) MB ($size bytes)"
