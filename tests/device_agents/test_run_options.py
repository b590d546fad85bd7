"""``edgefleet agent run`` (Typer) and ``python -m edgefleet.device_agents run`` (argparse,
the lean entry of the systemd unit) take the same options and start the same agent."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

ARGV = [
    "--device-id pi-17 --broker mqtt://fleet:1883".split(),
    "-c agent.toml --data-dir /var/lib/x --fleet-key a.pub --fleet-key b.pub".split(),
    [],
]


@pytest.fixture
def calls(monkeypatch):
    from edgefleet.device_agents import _run_agent as _run

    seen: list = []
    monkeypatch.setattr(_run, "run_agent", lambda config, **kw: seen.append((config, kw)))
    return seen


@pytest.mark.parametrize("argv", ARGV, ids=lambda a: " ".join(a) or "none")
def test_both_entries_start_the_same_agent(calls, argv):
    from edgefleet.device_agents._cli import app
    from edgefleet.device_agents._run_agent import run_from_options, run_parser

    result = CliRunner().invoke(app, ["run", *argv])
    assert result.exit_code == 0, result.output
    run_from_options(vars(run_parser("run").parse_args(argv)))
    typer_call, argparse_call = calls
    assert typer_call == argparse_call
    if "--fleet-key" in argv:
        assert typer_call[1]["fleet_keys"] == [Path("a.pub"), Path("b.pub")]


def test_both_entries_declare_the_same_flags():
    import typer.main
    from edgefleet.device_agents._cli import app
    from edgefleet.device_agents._run_agent import run_parser

    command = typer.main.get_command(app).commands["run"]
    typer_flags = {f for p in command.params for f in p.opts} - {"--help"}
    argparse_flags = {f for a in run_parser("run")._actions for f in a.option_strings}
    assert typer_flags == argparse_flags - {"-h", "--help"}
    assert "--fleet-key" in typer_flags and "-c" in typer_flags
