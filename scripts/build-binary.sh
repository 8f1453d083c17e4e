#!/usr/bin/env bash
# Builds dist/banatie-local, one self-contained executable (PyInstaller onefile).
# Needs the package's dependencies installed (pip install -e .) and PyInstaller
# (installed here if missing). Checks the result starts (its `version`), then prints
# its size. On a terminal it shows the seconds passing while PyInstaller works.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every dependency the package declares must be installed, or PyInstaller silently
# builds a small binary that cannot start.
if ! missing=$(python3 - <<'EOF'
import re
import sys
from importlib.metadata import PackageNotFoundError, requires, version

try:
    declared = requires("banatie-local") or []
except PackageNotFoundError:
    print("banatie-local itself")  # not installed at all
    sys.exit(1)
missing = []
for requirement in declared:
    if "extra ==" in requirement:
        continue  # optional extras (test, c2pa) are not in the binary
    name = re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0]
    try:
        version(name)
    except PackageNotFoundError:
        missing.append(name)
print(", ".join(missing))
sys.exit(1 if missing else 0)
EOF
); then
    echo "error: the package's dependencies are not installed (missing: $missing)." >&2
    echo "Install them first: python3 -m pip install -e ." >&2
    exit 1
fi

python3 -m PyInstaller --version >/dev/null 2>&1 || python3 -m pip install -q "pyinstaller>=6.10"

build=(python3 -m PyInstaller --noconfirm --clean --log-level WARN build.spec)
if [ -t 2 ]; then
    "${build[@]}" &
    pid=$!
    started=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
        printf '\rbuilding dist/banatie-local with PyInstaller... %3d s' $((SECONDS - started)) >&2
        sleep 1
    done
    printf '\r\033[K' >&2
    wait "$pid"
else
    "${build[@]}"
fi

if ! started=$(dist/banatie-local version 2>&1); then
    echo "error: dist/banatie-local was built but does not start:" >&2
    echo "$started" >&2
    exit 1
fi
size=$(stat -c %s dist/banatie-local)
echo "built dist/banatie-local: $((size / 1024 / 1024)) MB ($size bytes); it says: $started"
