"""samconfig.toml parsing: the local stack uses the same parameters as `sam deploy`."""

from __future__ import annotations

from pathlib import Path

import pytest

from ripple_local.samconfig import load_sam_environment, parameter_overrides, parse_parameter_overrides

ROOT = Path(__file__).resolve().parents[3]


def test_local_environment_of_the_real_samconfig() -> None:
    assert parameter_overrides(ROOT / "samconfig.toml") == {
        "Stage": "local",
        "RedisTls": "false",
        "LogLevel": "INFO",
        "RateLimitAuthPerMinute": "600",
        "RateLimitIpWritesPerMinute": "6000",
    }
    environment = load_sam_environment(ROOT / "samconfig.toml", "local")
    assert environment.stack_name == "ripple-local"
    assert environment.region == "us-east-1"


def test_default_environment_of_the_real_samconfig() -> None:
    assert parameter_overrides(ROOT / "samconfig.toml", "default") == {"Stage": "dev"}


def test_quoted_values_may_hold_spaces_and_equals_signs() -> None:
    parsed = parse_parameter_overrides('A="x y" B=plain C="k=v" D=""')
    assert parsed == {"A": "x y", "B": "plain", "C": "k=v", "D": ""}


def test_list_form_is_accepted() -> None:
    assert parse_parameter_overrides(['A="1"', "B=2 C=3"]) == {"A": "1", "B": "2", "C": "3"}


def test_malformed_override_is_rejected() -> None:
    with pytest.raises(ValueError, match="Key=value"):
        parse_parameter_overrides("JustAWord")


def test_unknown_environment_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "samconfig.toml"
    path.write_text('version = 0.1\n[default.deploy.parameters]\nparameter_overrides = "A=1"\n')
    with pytest.raises(KeyError, match="local"):
        parameter_overrides(path, "local")
    assert parameter_overrides(path, "default") == {"A": "1"}
