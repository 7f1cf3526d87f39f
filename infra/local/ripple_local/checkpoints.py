"""Durable stream checkpoints, so a restarted local runner resumes where it stopped.

Lambda keeps, per event source mapping and shard, the last sequence number it committed. The
local runner does the same in a JSON file in the state directory: without it, every ``up``
would replay streams from TRIM_HORIZON (duplicates) or skip to LATEST (losses).

One file serves every runner of a state directory, including runners in other processes
(``up`` runs each function's runners in a process of its own): a write takes an exclusive
lock on the state directory (``flock``), re-reads the file and replaces only the entries this
store wrote, so two processes never undo each other's commits.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["CHECKPOINT_FILE", "CheckpointStore"]

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoints.json"
_FORMAT_VERSION = 1


class CheckpointStore:
    """Last committed sequence number per (mapping, shard), persisted atomically.

    Every write replaces the whole file through a temporary file and ``os.replace``, so a crash
    leaves either the old or the new checkpoints, never a torn file. (No fsync: this guards a
    developer's process crashing, not the machine losing power.) One store may be shared by
    several runner threads, and several stores (processes) may share one state directory as
    long as each (mapping, shard) is written by one of them.
    """

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / CHECKPOINT_FILE
        self._lock = threading.Lock()
        self._mappings: dict[str, dict[str, dict[str, Any]]] = self._load()
        self._written: set[tuple[str, str]] = set()  # entries this store owns on disk

    def _load(self) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            # A damaged file must not stop the stack; keep it for inspection and start over.
            broken = self.path.with_suffix(".corrupt")
            logger.warning("checkpoints in %s unreadable (%s); moved to %s", self.path, error, broken)
            os.replace(self.path, broken)
            return {}
        if not isinstance(document, dict) or document.get("version") != _FORMAT_VERSION:
            logger.warning("ignoring checkpoints in %s: unknown format", self.path)
            return {}
        mappings = document.get("mappings")
        return mappings if isinstance(mappings, dict) else {}

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Exclusive across processes: flock on the state directory itself (no lock file)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.state_dir, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # releases the lock

    def _read_disk(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The file's mappings as other processes left them ({} when absent or unreadable)."""
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(document, dict) or document.get("version") != _FORMAT_VERSION:
            return {}
        mappings = document.get("mappings")
        return mappings if isinstance(mappings, dict) else {}

    def _save(self, mapping_id: str, shard_id: str) -> None:
        """Write this store's entry for (mapping, shard) into the file, keeping everyone else's."""
        self._written.add((mapping_id, shard_id))
        with self._file_lock():
            merged = self._read_disk()
            for owned_mapping, owned_shard in self._written:
                entry = self._mappings.get(owned_mapping, {}).get(owned_shard)
                if entry is not None:
                    merged.setdefault(owned_mapping, {})[owned_shard] = dict(entry)
            self._write(merged)
            for other, shards in merged.items():  # keep the in-memory view current too
                for other_shard, entry in shards.items():
                    if (other, other_shard) not in self._written:
                        self._mappings.setdefault(other, {})[other_shard] = entry

    def _write(self, mappings: dict[str, dict[str, dict[str, Any]]]) -> None:
        document = {"version": _FORMAT_VERSION, "mappings": mappings}
        descriptor, temporary = tempfile.mkstemp(prefix=".checkpoints-", suffix=".tmp", dir=self.state_dir)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                json.dump(document, stream, indent=1, sort_keys=True)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _shard(self, mapping_id: str, shard_id: str) -> dict[str, Any]:
        return self._mappings.get(mapping_id, {}).get(shard_id, {})

    def get(self, mapping_id: str, shard_id: str) -> str | None:
        """The last committed sequence number, or None when the shard was never committed."""
        with self._lock:
            value = self._shard(mapping_id, shard_id).get("sequence_number")
            return str(value) if value is not None else None

    def put(self, mapping_id: str, shard_id: str, sequence_number: str) -> None:
        """Commit ``sequence_number`` (and everything before it in the shard)."""
        with self._lock:
            shard = self._mappings.setdefault(mapping_id, {}).setdefault(shard_id, {})
            shard["sequence_number"] = sequence_number
            self._save(mapping_id, shard_id)

    def is_ended(self, mapping_id: str, shard_id: str) -> bool:
        """True once a closed shard has been read to its end."""
        with self._lock:
            return bool(self._shard(mapping_id, shard_id).get("ended", False))

    def mark_ended(self, mapping_id: str, shard_id: str) -> None:
        """Remember that a closed shard is fully processed (its children may start)."""
        with self._lock:
            self._mappings.setdefault(mapping_id, {}).setdefault(shard_id, {})["ended"] = True
            self._save(mapping_id, shard_id)

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """A copy of all checkpoints, other processes' included (for status output and tests)."""
        with self._lock, self._file_lock():
            merged = self._read_disk()
            for mapping_id, shard_id in self._written:
                entry = self._mappings.get(mapping_id, {}).get(shard_id)
                if entry is not None:
                    merged.setdefault(mapping_id, {})[shard_id] = dict(entry)
            return json.loads(json.dumps(merged))
