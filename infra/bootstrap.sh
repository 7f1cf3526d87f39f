#!/usr/bin/env bash
# Installs what Ripple's two commands need on a fresh Linux machine, idempotently:
#   - a virtualenv in .venv with the project and its dev dependencies (re-installed when
#     pyproject.toml changes),
#   - a redis-server binary (Debian/Ubuntu package via apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.ripple-installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing Python packages into $VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e '.[dev]'
  rm -f "$VENV"/.ripple-installed-*
  touch "$stamp"
fi

find_redis() {
  command -v redis-server 2>/dev/null && return 0
  for candidate in /usr/bin/redis-server /usr/sbin/redis-server /usr/local/bin/redis-server; do
    [ -x "$candidate" ] && echo "$candidate" && return 0
  done
  return 1
}

if ! find_redis >/dev/null; then
  echo "bootstrap: redis-server not found; installing the OS package"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  if command -v apt-get >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  elif command -v dnf >/dev/null; then
    $SUDO dnf install -y redis
  else
    echo "bootstrap: please install redis-server (7.x) with your package manager" >&2
    exit 1
  fi
fi
echo "bootstrap: ready ($("$VENV/bin/python" --version), $("$(find_redis)" --version | cut -d' ' -f3))"
