"""The AWS emulators a local stack can run, started together and described by their Endpoints.

=================  ============================================  ==========================
emulator           DynamoDB + DynamoDB Streams                   SQS, Secrets Manager, STS
=================  ============================================  ==========================
``dynamodb-local``  DynamoDB Local (AWS's own engine), default   moto server
``moto``            moto server                                  moto server
``localstack``      LocalStack in host mode (DynamoDB Local      LocalStack
                    inside)
=================  ============================================  ==========================

Why DynamoDB Local is the default (measured, README "Emulators"): it is the engine AWS ships,
so transactions, conditions, batch limits, ClientRequestToken idempotency and streams behave
as DynamoDB's do, and a Query or a transaction costs the same at 1k items as at 50k. Stock
moto loses writes under concurrent transactions and slows down as tables grow; the stack runs
it through ``ripple_local.moto_server`` (DynamoDB requests in turn, rollbacks that leave the
stream as DynamoDB would), which fixes the first, not the second.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ripple_local.aws import Endpoints
from ripple_local.processes import DynamoDBLocalProcess, EmulatorProcess, ManagedProcess

__all__ = [
    "DEFAULT_EMULATOR",
    "DYNAMODB_LOCAL",
    "EMULATORS",
    "LOCALSTACK",
    "MOTO",
    "RunningEmulators",
    "start_emulators",
]

DYNAMODB_LOCAL, MOTO, LOCALSTACK = "dynamodb-local", "moto", "localstack"
EMULATORS = (DYNAMODB_LOCAL, MOTO, LOCALSTACK)
DEFAULT_EMULATOR = DYNAMODB_LOCAL


@dataclass
class RunningEmulators:
    """Started emulator processes and where each service is."""

    endpoints: Endpoints
    processes: list[ManagedProcess] = field(default_factory=list)

    def stop(self) -> None:
        """Stop every process, last started first; safe to call twice."""
        for process in reversed(self.processes):
            process.stop()
        self.processes = []


def _start(process: ManagedProcess, port: int | None, started: list[ManagedProcess]) -> ManagedProcess:
    started.append(process)
    return process.start_on_any_free_port() if port is None else process.start()


def start_emulators(
    kind: str,
    state_dir: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    emulator_port: int | None = None,
    dynamodb_port: int | None = None,
    db_path: str | os.PathLike[str] | None = None,
) -> RunningEmulators:
    """Start the emulators of ``kind``; a port of None means a free one (tests, the bench).

    ``db_path`` persists DynamoDB Local's data there (``dynamodb-local`` only). On failure,
    whatever had started is stopped again before the error propagates.
    """
    if kind not in EMULATORS:
        raise ValueError(f"emulator must be one of {', '.join(EMULATORS)}, not {kind!r}")
    if db_path is not None and kind != DYNAMODB_LOCAL:
        raise ValueError("persisting data needs the dynamodb-local emulator")
    state = Path(state_dir)
    started: list[ManagedProcess] = []
    try:
        if kind == LOCALSTACK:
            from ripple_local.localstack import LocalStackProcess

            localstack = LocalStackProcess(host, emulator_port or 0, state)
            _start(localstack, emulator_port, started)
            return RunningEmulators(Endpoints(localstack.url), started)
        dynamodb: str | None = None
        if kind == DYNAMODB_LOCAL:
            engine = DynamoDBLocalProcess(host, dynamodb_port or 0, state, db_path=db_path)
            dynamodb = _start(engine, dynamodb_port, started).url
        moto = EmulatorProcess(host, emulator_port or 0, state)
        _start(moto, emulator_port, started)
        return RunningEmulators(Endpoints.of(moto.url, dynamodb), started)
    except BaseException:
        RunningEmulators(Endpoints(""), started).stop()
        raise
