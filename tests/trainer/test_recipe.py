"""Recipe parsing and validation: errors name the field and say what came."""

from __future__ import annotations

import pytest
from edgefleet.sdk import ConfigError
from edgefleet.trainer import (
    LowRank,
    PruneChannels,
    RecipeError,
    builtin_recipe,
    load_recipe,
    parse_recipe,
    recipe_digest,
)


def test_builtin_digits_recipe_parses_in_order():
    r = load_recipe("digits")
    assert r.name == "digits"
    assert r.model.name == "digits_cnn"
    assert [type(s) for s in r.compress] == [PruneChannels, LowRank]
    assert "raspberry-pi-4" in r.targets
    assert set(r.export.formats) == {"onnx", "tflite", "pte"}


def test_builtin_mobilenet_recipe_parses():
    r = load_recipe(builtin_recipe("mobilenet_v2"))
    assert r.model.name == "mobilenet_v2"
    # the full pipeline the compression benchmark times: block, residual and head channels
    # pruned, fine-tuned by distillation from the unpruned model, then int8
    (step,) = r.compress
    assert isinstance(step, PruneChannels)
    assert (step.amount, step.residual_amount, step.head, step.distill) == (0.75, 0.5, True, True)
    assert "static" in r.quantize.onnx and "int8" in r.export.precisions


@pytest.mark.parametrize(
    ("toml", "field", "got"),
    [
        ('name = "x"\n[[compress]]\nstep = "prune_channels"\namount = 1.5\n',
         "compress.0.prune_channels.amount", "1.5"),
        ('name = "x"\n[[compress]]\nstep = "shrink"\n', "compress.0", "shrink"),
        ('name = "x"\n[[compress]]\nstep = "prune_channels"\namount = 0.5\n'
         'residual_amount = 1.0\n', "compress.0.prune_channels.residual_amount", "1.0"),
        ('name = "x"\n[model]\nname = "resnet"\n', "model.name", "resnet"),
        ('name = "x"\n[train]\nepochs = -1\n', "train.epochs", "-1"),
        ('name = "x"\n[export]\nformats = ["onnx", "coreml"]\n', "export.formats.1", "coreml"),
        ('name = "x"\nbogus = 1\n', "bogus", "1"),
        ('name = "bad name!"\n', "name", "bad name!"),
        ("version = '1'\n", "name", ""),
    ],
)  # fmt: skip
def test_validation_errors_name_the_field(toml, field, got):
    with pytest.raises(RecipeError) as exc:
        parse_recipe(toml, "r.toml")
    msg = str(exc.value)
    assert f"  {field}:" in msg, msg
    assert got in msg
    assert "r.toml" in msg


def test_recipe_error_is_an_edgefleet_config_error():
    assert issubclass(RecipeError, ConfigError)


def test_bad_toml_and_missing_file_are_clear(tmp_path):
    with pytest.raises(RecipeError, match="not valid TOML"):
        parse_recipe("name = ", "broken.toml")
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(tmp_path / "nope.toml")
    with pytest.raises(RecipeError, match="no built-in recipe 'nope'"):
        load_recipe("nope")


def test_digest_changes_with_content():
    a = parse_recipe('name = "x"\n')
    b = parse_recipe('name = "x"\n[train]\nepochs = 3\n')
    assert recipe_digest(a) == recipe_digest(parse_recipe('name = "x"\n'))
    assert recipe_digest(a) != recipe_digest(b)
    assert recipe_digest(a).startswith("sha256:")


def test_cli_reports_recipe_errors_without_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from edgefleet._cli import _register, app

    _register("train")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[compress]]\nstep = "lowrank"\nenergy = 2.0\n')
    res = CliRunner().invoke(app, ["train", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "compress.0.lowrank.energy" in res.output and "2.0" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "o").exists()  # nothing written for a recipe that does not validate
