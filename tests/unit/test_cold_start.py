"""Cold start (issue 11): each function's handler imports what its invocations use, and
nothing another function uses.

Each handler is imported from source in a fresh interpreter with Lambda's environment
(``LAMBDA_TASK_ROOT`` makes Powertools' Tracer active, as on Lambda with ``Tracing: Active``).
What every invocation needs is imported at cold start, in Lambda's init phase, not deferred to
the first request; what a function never runs is not imported at all (``ripple.container``
imports each part where it builds it), and what only some requests run is imported by the
first of them. The built artefacts get the same check in ``integration/test_sam_artifacts.py``;
the time it takes is bench/coldstart.py's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ripple_local.cfn import load_template
from ripple_local.functions import function_names, handler_path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")

# Imported by the handler module itself: what the function's every invocation uses.
AT_COLD_START = {
    # The caller check of every authenticated request: Redis, then DynamoDB (PynamoDB on
    # botocore, also the JWT secret's SDK); the tokens.
    "ApiFunction": {"chalice.app", "redis", "pynamodb.models", "botocore.client", "jwt"},
    "FanoutFunction": {"aws_lambda_powertools.utilities.batch", "pynamodb.models", "tenacity"},
    "CacheRefresherFunction": {"aws_lambda_powertools.utilities.batch", "redis"},
}
# Not imported at cold start: what the function never runs, or only some of its requests do.
NEVER = {
    "ApiFunction": {
        "limits",  # by the first write or sign-in: no limit applies to a read
        "aws_lambda_powertools.utilities.batch",
        "ripple.streams",
        "ripple.services.fanout",
    },
    "FanoutFunction": {"redis", "jwt", "limits", "chalice", "ripple.cache.client", "ripple.auth.tokens"},
    # It calls no AWS API: no SDK beyond botocore's top-level package (Powertools' user agent).
    "CacheRefresherFunction": {
        "botocore.session",
        "pynamodb",
        "tenacity",
        "jwt",
        "limits",
        "chalice",
        "ripple.repositories.models",
    },
}
# No function uses boto3 (botocore, as PynamoDB) or sqlite3 (X-Ray's patch_all imported it).
NEVER_ANYWHERE = {"boto3", "s3transfer", "sqlite3"}
# X-Ray traces the AWS SDK in the functions that call AWS, from their cold start on.
X_RAY_PATCHED = {
    "ApiFunction": ["botocore", "pynamodb"],
    "FanoutFunction": ["botocore", "pynamodb"],
    "CacheRefresherFunction": [],
}

_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
sys.modules["app"] = module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from aws_xray_sdk.core import patcher
print(json.dumps({"modules": sorted(sys.modules), "patched": sorted(patcher._PATCHED_MODULES)}))
"""


def _imported(function_id: str, tmp_path: Path) -> dict[str, list[str]]:
    source, _ = handler_path(TEMPLATE, function_id, ROOT)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "ripple"), str(source.parent)]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(tmp_path),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": f"ripple-{function_id}",
        "LAMBDA_TASK_ROOT": str(source.parent),
        "JWT_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:jwt",  # never fetched
    }
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(source)],
        env=env,
        cwd=source.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _loaded(modules: set[str], name: str) -> bool:
    return name in modules or any(m.startswith(f"{name}.") for m in modules)


@pytest.mark.parametrize("function_id", function_names(TEMPLATE))
def test_a_handler_imports_what_its_invocations_use_and_nothing_else(
    function_id: str, tmp_path: Path
) -> None:
    imported = _imported(function_id, tmp_path)
    modules = set(imported["modules"])
    assert AT_COLD_START[function_id] <= modules, "deferred to the first request"
    unused = sorted(n for n in NEVER[function_id] | NEVER_ANYWHERE if _loaded(modules, n))
    assert not unused, f"{function_id} imports what it never runs: {unused}"
    assert imported["patched"] == X_RAY_PATCHED[function_id]
