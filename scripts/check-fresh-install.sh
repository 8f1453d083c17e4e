#!/usr/bin/env bash
# Proves the README's quick start on this machine: a brand-new virtual environment,
# `pip install .`, `banatie-local serve` with no configuration and no Gemini key,
# then /health answers. Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
port=${PORT:-39123}
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check .
cd "$work"
env -u GEMINI_API_KEY "$work/venv/bin/banatie-local" serve --port "$port" >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/health" >"$work/health.json" 2>/dev/null; then
    cat "$work/health.json"; echo
    grep -q '"status":"healthy"' "$work/health.json"
    grep -q 'project key' "$work/serve.log"
    kill -TERM "$pid"; wait "$pid"
    echo "fresh install: OK"
    exit 0
  fi
  sleep 0.2
done
cat "$work/serve.log"
echo "fresh install: the server did not answer /health" >&2
exit 1
