"""Property-based contract testing with Schemathesis, all four of its phases, as its ``st run``
command runs them against the running local API (the session's ``stack``):

* examples - the schema's own examples;
* coverage - boundary and just-out-of-bounds values, every documented status, and the methods
  no route has (QUERY, TRACE, PUT on /posts ...: 405 with ``Allow``);
* fuzzing - generated requests, valid and invalid;
* stateful - sequences of calls linked through their responses (a signed-up user's id into
  ``/users/{user_id}``, a new post's id into ``/posts/{post_id}/like``).

Requests carry valid bearer tokens of ``USERS`` users in turn (``schemathesis_hooks.py``), and
every response must pass every check Schemathesis has but one: no server error, no response
outside its schema, no status, content type or header the operation does not document, no
schema-invalid request accepted (refused with one of the API's documented 4xx), no 405
without ``Allow``, no resource still readable after its delete, no route that ignores its
token. Left out: ``positive_data_acceptance`` (every schema-valid request is answered 2xx) -
an opaque cursor and "you cannot follow yourself" are rules a schema cannot state; their 400s
are documented.

CI-sized: ``RIPPLE_SCHEMATHESIS_EXAMPLES`` (default 10) per operation in the fuzzing phase;
the coverage phase always covers every case it derives. Deterministic (a fixed seed): a CI
failure reproduces locally. A longer run against ``make up``, with the same checks:

    .venv/bin/st run functions/api/openapi.json --url http://127.0.0.1:3000 \\
        --header "Authorization: Bearer $TOKEN" --phases examples,coverage,fuzzing,stateful \\
        --checks all --exclude-checks positive_data_acceptance --max-examples 500

(``TOKEN`` from ``POST /auth/signup``; writes are limited to 60 per user per minute, so a long
run with one token mostly meets 429s - documented, hence conformant.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.client import MEASUREMENTS, Api

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "functions/api/openapi.json"
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
ST = Path(sys.executable).with_name("st")
MAX_EXAMPLES = int(os.environ.get("RIPPLE_SCHEMATHESIS_EXAMPLES", "10"))
PHASES = ("examples", "coverage", "fuzzing", "stateful")
USERS = 10
# A schema-invalid request must be refused with one of the 4xx the API documents (a body over
# the 16 KiB limit is refused 413 before its fields are read).
REFUSALS = ["400", "401", "403", "404", "405", "409", "413", "415", "429"]
CONFIG = f"""
[checks.negative_data_rejection]
expected-statuses = {REFUSALS!r}
"""


def test_api_conforms_to_its_contract_in_every_phase(stack: Api, tmp_path: Path) -> None:
    tokens = [stack.signup("st")["token"] for _ in range(USERS)]
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(ST), "--config-file", str(config), "--no-color",
        "run", str(SPEC), "--url", stack.base_url,
        "--phases", ",".join(PHASES),
        "--checks", "all", "--exclude-checks", "positive_data_acceptance",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", "12", "--generation-deterministic",
        "--workers", "1", "--request-timeout", "30",
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS), "RIPPLE_ST_TOKENS": ",".join(tokens)}
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-20_000:]
    summary = report[report.rindex("Test Phases:") :]
    for phase in PHASES:
        assert f"✅ {phase.capitalize()}" in summary, summary  # it ran and found nothing
    MEASUREMENTS.append("schemathesis: " + report.strip().splitlines()[-1].strip(" ="))


@pytest.mark.parametrize("method", ["PUT", "PATCH", "TRACE", "QUERY", "PURGE", "PROPFIND", "LINK", "X-Y"])
def test_methods_no_route_has_are_a_405_with_allow(stack: Api, method: str) -> None:
    token = stack.signup("methods")["token"]
    r = stack.call(method, "/posts", token)
    assert r.status_code == 405, (r.status_code, r.text[:200])
    assert r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["Allow"] == "POST"
