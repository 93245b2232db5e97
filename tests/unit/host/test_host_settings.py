"""``environments/<name>/isolation.toml``: defaults, every accepted spelling, every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from isolation.environments.settings import (
    SETTINGS_FILE,
    Limits,
    SandboxSettings,
    describe,
    load_settings,
    parse_settings,
)
from isolation.environments.spec import load_spec
from isolation.errors import ConfigurationError


def test_no_file_means_the_sandboxed_defaults(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    assert settings == SandboxSettings("bubblewrap", "none", Limits())
    assert settings.sandboxed
    assert Limits().memory == 4 * 2**30 and Limits().processes == 256 and Limits().wall_clock == 86400


def test_every_setting_and_unit(tmp_path: Path) -> None:
    text = """
sandbox = "bubblewrap"
network = "host"
[limits]
memory = "2GiB"
processes = 64
wall_clock = "90m"
log = "10MB"
tmp = 268435456
"""
    settings = parse_settings(text, "isolation.toml")
    assert settings.network == "host"
    assert settings.limits == Limits(memory=2 * 2**30, processes=64, wall_clock=5400, log=10_000_000, tmp=2**28)
    assert "network: host" in describe(settings) and "64 processes" in describe(settings)


def test_sandbox_none_is_explicit_and_described_as_no_boundary() -> None:
    settings = parse_settings('sandbox = "none"\n', "isolation.toml")
    assert not settings.sandboxed
    assert "worker's authority" in describe(settings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('sandbox = "firejail"\n', 'sandbox must be "bubblewrap" or "none"'),
        ('network = "bridge"\n', 'network must be "none" or "host"'),
        ('netwrok = "host"\n', "unknown setting(s) netwrok"),
        ("[limits]\nmemroy = 1\n", "unknown limit(s) memroy"),
        ('[limits]\nmemory = "lots"\n', "limits.memory must be a size"),
        ('[limits]\nwall_clock = "soon"\n', "limits.wall_clock must be a duration"),
        ('[limits]\nprocesses = "many"\n', "limits.processes must be a whole number"),
        ("[limits]\nprocesses = 2\n", "below the minimum"),
        ('[limits]\nmemory = "1MiB"\n', "below the minimum"),
        ("limits = 3\n", "[limits] must be a table"),
        ("sandbox = \n", "is not valid TOML"),
    ],
)
def test_a_bad_setting_is_an_error_naming_it(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_settings(text, "environments/x/isolation.toml")
    assert message in info.value.message
    assert "environments/x/isolation.toml" in info.value.message


def test_the_spec_carries_the_settings_but_its_fingerprint_ignores_them(tmp_path: Path) -> None:
    env = tmp_path / "teama"
    env.mkdir()
    (env / "python-version").write_text("3.12\n")
    before = load_spec(env)
    (env / SETTINGS_FILE).write_text('network = "host"\n')
    after = load_spec(env)
    assert after.settings.network == "host" and before.settings.network == "none"
    # Changing confinement re-records the environment; it never reinstalls it.
    assert before.fingerprint() == after.fingerprint()


def test_recorded_settings_round_trip_and_bad_records_are_refused() -> None:
    settings = parse_settings('network = "host"\n[limits]\nprocesses = 99\n', "f")
    assert SandboxSettings.from_dict(settings.to_dict(), "marker") == settings
    bad_records = (
        None,
        {"sandbox": "bubblewrap"},
        {"sandbox": "bubblewrap", "network": "none", "limits": {"nope": 1}},
        {"sandbox": "chroot", "network": "none"},
        {"sandbox": "bubblewrap", "network": "bridge"},
    )
    for bad in bad_records:
        with pytest.raises(ConfigurationError, match="sandbox settings are") as info:
            SandboxSettings.from_dict(bad, "marker")
        assert "rebuild the environment" in info.value.diagnostics()
