"""The one ``edgefleet`` command mounts every component."""

from __future__ import annotations

import shutil
import subprocess
import sys

from typer.testing import CliRunner


def test_root_help_lists_every_component():
    exe = shutil.which("edgefleet") or str(
        (__import__("pathlib").Path(sys.executable).parent) / "edgefleet"
    )
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for group in ("sdk", "keys", "agent", "fleet", "hil", "train", "demo"):
        assert group in out.stdout, f"`edgefleet {group}` is missing from --help"


def test_missing_extra_names_the_install(monkeypatch):
    """A component whose dependencies are missing is listed with the extra to install."""
    import typer

    from edgefleet import _cli

    monkeypatch.setattr(
        _cli, "_GROUPS", [("fleet", "edgefleet._no_such_module", "edgefleet[fleet]", "x")]
    )
    monkeypatch.setattr(_cli, "app", typer.Typer())
    _cli.app.callback()(lambda: None)
    _cli._register("fleet")
    result = CliRunner().invoke(_cli.app, ["fleet"])
    assert result.exit_code == 2
    assert "pip install 'edgefleet[fleet]'" in result.output


def test_keys_new_writes_a_pair(tmp_path, monkeypatch):
    import typer

    from edgefleet import _cli

    # a private app: the module-level one is shared with other tests
    monkeypatch.setattr(_cli, "app", typer.Typer())
    _cli._register("keys")
    app = _cli.app
    result = CliRunner().invoke(app, ["keys", "new", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "edgefleet.key").exists() and "key id" in result.output
    again = CliRunner().invoke(app, ["keys", "new", "--out", str(tmp_path)])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output
