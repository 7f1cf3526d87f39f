"""LocalStack in host mode (no Docker): DynamoDB, DynamoDB Streams, SQS, Secrets Manager and STS
on one endpoint, bound to 127.0.0.1, offline.

Installed by ``python -m ripple_local.tools install-localstack`` (see ``ripple_local.tools``);
started here with exactly the settings it needs, each for a reason:

==========================  ================================================================
``GATEWAY_LISTEN``          127.0.0.1:port only
``GATEWAY_SERVER``          hypercorn: the default twisted server listens on 0.0.0.0 anyway
``DNS_ADDRESS=0``           no DNS server on port 53 of every interface
``OVERRIDE_IN_DOCKER=0``    the machine may have a /.dockerenv; without this LocalStack
                            ignores FILESYSTEM_ROOT and writes to /var/lib/localstack
``FILESYSTEM_ROOT``         a folder of the state directory; ``usr/lib/localstack`` in it
                            links to the installed libraries (DynamoDB Local, kinesis-local)
``SKIP_SSL_CERT_DOWNLOAD``  no certificate download from GitHub
``DISABLE_EVENTS``          no analytics sent
``KINESIS_SHARD_LIMIT``     streams are Kinesis shards inside; the default 100 runs out
``KINESIS_LATENCY=0``       a new table's stream is ENABLED at once (500 ms otherwise)
``EAGER_SERVICE_LOADING``   "ready" means every service (and DynamoDB Local) is up
``SQS_ENDPOINT_STRATEGY``   queue URLs on this endpoint, not a public DNS name
``DYNAMODB_IN_MEMORY``      a throwaway store, like the default emulators
==========================  ================================================================

The environment is otherwise empty, so the caller's AWS_* variables cannot leak in. LocalStack
runs DynamoDB Local and kinesis-local in sessions of their own; stopping it kills that whole
tree (``ManagedProcess.stop``), because LocalStack 2026.3 sometimes hangs on SIGTERM.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from ripple_local import tools
from ripple_local.processes import ManagedProcess

__all__ = ["SERVICES", "LocalStackProcess"]

SERVICES = "dynamodb,dynamodbstreams,sqs,secretsmanager,sts"


class LocalStackProcess(ManagedProcess):
    """LocalStack on ``host:port``, its files under ``<state_dir>/localstack``."""

    name = "localstack"
    start_timeout_s = 180.0  # 5-12 s on an idle 2-core machine; much more under load
    stop_grace_s = 5.0  # then the tree is killed (in-memory state: nothing to lose)

    def __init__(
        self, host: str = "127.0.0.1", port: int = 4566, state_dir: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__(host, port, state_dir)
        self.install = tools.localstack()

    @property
    def url(self) -> str:
        """The one endpoint of every service."""
        return f"http://{self.host}:{self.port}"

    @property
    def filesystem_root(self) -> Path:
        return self.state_dir / "localstack" / str(self.port)

    def command(self) -> Sequence[str]:
        libs = self.filesystem_root / "usr" / "lib" / "localstack"
        libs.parent.mkdir(parents=True, exist_ok=True)
        if libs.is_symlink() or libs.exists():
            libs.unlink()
        libs.symlink_to(self.install.libs, target_is_directory=True)
        # Under the reaper: LocalStack's own children (DynamoDB Local, kinesis-local) end
        # with the stack even when it is killed outright.
        return [
            sys.executable,
            "-m",
            "ripple_local.reaper",
            "--",
            str(self.install.python),
            "-m",
            "localstack.runtime.main",
        ]

    def environment(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),  # java and node, as LocalStack finds them
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "GATEWAY_LISTEN": f"{self.host}:{self.port}",
            "GATEWAY_SERVER": "hypercorn",
            "DNS_ADDRESS": "0",
            "SERVICES": SERVICES,
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(self.filesystem_root),
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DISABLE_EVENTS": "1",
            "KINESIS_SHARD_LIMIT": "10000",
            "KINESIS_LATENCY": "0",
            "KINESIS_PERSISTENCE": "0",
            "DYNAMODB_IN_MEMORY": "1",
            "EAGER_SERVICE_LOADING": "1",
            "SQS_ENDPOINT_STRATEGY": "dynamic",
        }

    def ready(self) -> bool:
        """Ready once the health endpoint says every service is running (or available)."""
        try:
            with urllib.request.urlopen(f"{self.url}/_localstack/health", timeout=2.0) as response:
                services = json.loads(response.read()).get("services") or {}
        except (OSError, ValueError, urllib.error.URLError):
            return False
        wanted = SERVICES.split(",")
        return all(services.get(name) in ("running", "available") for name in wanted)
