"""Configuration is read and checked once, at cold start, with an error naming the variable
(issue 14): a bad value must not surface later as a 500 on the request that first needs it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from ripple.config import ConfigError, Settings
from ripple_local.cfn import load_template

ROOT = Path(__file__).resolve().parents[2]
# Read by Powertools or the Lambda runtime, not by Settings.
NOT_OURS = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "POWERTOOLS_TRACER_CAPTURE_RESPONSE",
    "LOG_LEVEL",
    "AWS_LAMBDA_EXEC_WRAPPER",
}

BAD = [
    ("FANOUT_PAGE_SIZE", "abc", "must be an integer"),
    ("FANOUT_PAGE_SIZE", "0", "at least 1"),
    ("REDIS_PORT", "70000", "between 1 and 65535"),
    ("REDIS_TIMEOUT_SECONDS", "fast", "must be a number"),
    ("REDIS_TIMEOUT_SECONDS", "0", "between 0.001 and 30"),
    ("REDIS_TLS", "maybe", "true or false"),
    ("PASSWORD_SCRYPT_N", "1000", "power of two"),  # hashlib.scrypt would raise at the first signup
    ("PASSWORD_SCRYPT_N", "1", "between 2 and"),
    ("FEED_CACHE_MAX_ITEMS", "-5", "at least 1"),
    ("JWT_LEEWAY_SECONDS", "-1", "between 0 and 300"),
    ("RATE_LIMIT_WRITES_PER_MINUTE", "1.5", "must be an integer"),
    ("ACCESS_TOKEN_TTL_SECONDS", "0", "at least 1"),
]


@pytest.mark.parametrize(("variable", "raw", "says"), BAD)
def test_a_bad_value_names_its_variable(variable: str, raw: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({variable: raw})
    message = str(raised.value)
    assert message.startswith(f"environment variable {variable} must be ") and says in message


def test_good_values_parse_and_unset_ones_keep_defaults() -> None:
    settings = Settings.from_env(
        {
            "REDIS_PORT": "7000",
            "REDIS_TLS": "TRUE",
            "REDIS_TIMEOUT_SECONDS": "0.5",
            "BACKFILL_POSTS": "0",
            "FEED_TABLE": "t",
            "JWT_SECRET": "s3cret",
            "RATE_LIMIT_AUTH_PER_MINUTE": "",
        }
    )
    assert (settings.redis_port, settings.redis_tls, settings.redis_timeout_seconds) == (7000, True, 0.5)
    assert (settings.backfill_posts, settings.feed_table) == (0, "t")
    assert settings.rate_limit_auth_per_minute == Settings().rate_limit_auth_per_minute
    assert "s3cret" not in repr(settings)  # settings may be logged; the secret never is


def test_every_variable_the_template_sets_is_read_by_settings() -> None:
    """A variable template.yaml sets that Settings ignores is a setting silently not applied."""
    known = {f.metadata["env"] for f in fields(Settings) if "env" in f.metadata}
    template = load_template(ROOT / "template.yaml")
    variables = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in template["Resources"].values():
        variables |= set(resource.get("Properties", {}).get("Environment", {}).get("Variables", {}))
    assert variables - NOT_OURS - known == set()


@pytest.mark.parametrize("function", ["fanout", "cache_refresher", "api"])
def test_a_function_with_a_bad_value_fails_at_import_naming_it(function: str) -> None:
    """Cold start is where it fails: the handler module builds its container at import."""
    env = {**os.environ, "FANOUT_PAGE_SIZE": "1e3", "AWS_DEFAULT_REGION": "us-east-1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions" / function), str(ROOT / "layers/ripple")])
    result = subprocess.run(
        [sys.executable, "-c", "import app"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "ripple.config.ConfigError: environment variable FANOUT_PAGE_SIZE must be an integer, got '1e3'"
    )
