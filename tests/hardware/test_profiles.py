"""Target profiles: bundled data, validation errors and detection on recorded samples."""

from __future__ import annotations

import dataclasses
import platform
import tomllib
from pathlib import Path

import pytest
from edgefleet.hardware.profiles import (
    BACKEND_OPTION_FIELDS,
    PROFILE_DIR,
    ProfileError,
    detect,
    detect_profile,
    get_profile,
    list_profiles,
    load_profile,
)

SAMPLES = Path(__file__).parent / "samples"
TARGETS = [
    "jetson-orin-nano",
    "jetson-xavier-nx",
    "raspberry-pi-4",
    "raspberry-pi-5",
    "rockchip-rk3588",
    "x86_64-cpu",
]


def test_every_target_has_a_valid_profile():
    assert [p.name for p in list_profiles()] == TARGETS
    for p in list_profiles():
        assert p.arch == ("x86_64" if p.name == "x86_64-cpu" else "aarch64")
        assert p.cores >= 4 and p.ram_mb >= 4096
        assert p.runtimes and p.budgets.max_package_bytes > 0
        assert p.budgets.p95_latency_ms > 0 and p.budgets.peak_rss_mb > 0


def test_facts_from_data_sheets():
    orin, xavier = get_profile("jetson-orin-nano"), get_profile("jetson-xavier-nx")
    assert (orin.cores, orin.ram_mb) == (6, 8192)
    assert [a.kind for a in xavier.accelerators] == ["gpu", "dla"]
    assert get_profile("rockchip-rk3588").cores == 8
    pi4 = get_profile("raspberry-pi-4")
    assert pi4.accelerators == () and pi4.runtimes[0].backend == "litert"
    assert pi4.runtimes[0].options["num_threads"] == 4


def test_jetson_prefers_tensorrt_then_cuda():
    ort = get_profile("jetson-orin-nano").runtimes[0]
    assert ort.backend == "onnxruntime"
    assert ort.options["providers"] == (
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    )


def test_options_build_the_sdk_option_dataclasses():
    from edgefleet.sdk.backends._base import (
        ExecuTorchOptions,
        LiteRTOptions,
        OnnxRuntimeOptions,
        TorchOptions,
    )

    types = {
        "onnxruntime": OnnxRuntimeOptions,
        "litert": LiteRTOptions,
        "executorch": ExecuTorchOptions,
        "torch": TorchOptions,
    }
    for backend, cls in types.items():
        assert BACKEND_OPTION_FIELDS[backend] == {f.name for f in dataclasses.fields(cls)}
    for p in list_profiles():
        for r in p.runtimes:
            opts = types[r.backend](**r.options)
            assert dataclasses.asdict(opts)  # built without a TypeError


def test_unknown_profile_names_the_choices():
    with pytest.raises(ProfileError, match=r"unknown target profile 'pi-9'.*raspberry-pi-4"):
        get_profile("pi-9")


def _write(tmp_path: Path, data_edit, name: str = "raspberry-pi-4") -> Path:
    text = (PROFILE_DIR / f"{name}.toml").read_text()
    path = tmp_path / f"{name}.toml"
    path.write_text(data_edit(text))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace("peak_rss_mb = 512", "peak_rss_mb = -1"),
            r"raspberry-pi-4\.toml: budgets\.peak_rss_mb: expected an integer >= 1, got -1",
        ),
        (
            lambda t: t.replace('arch = "aarch64"', 'arch = "armv7l"'),
            r"raspberry-pi-4\.toml: arch: expected one of \['aarch64', 'x86_64'\], got 'armv7l'",
        ),
        (
            lambda t: t.replace('backend = "litert"', 'backend = "tensorrt"'),
            r"raspberry-pi-4\.toml: runtimes\[0\]\.backend: expected one of .*got 'tensorrt'",
        ),
        (
            lambda t: t.replace("num_threads = 4", "threads = 4"),
            r"runtimes\[0\]\.options\.threads: expected one of \['delegates', 'num_threads'\]",
        ),
        (
            lambda t: t.replace('graph_optimization = "all"', 'graph_optimization = "max"'),
            r"runtimes\[1\]\.options\.graph_optimization: expected one of .*got 'max'",
        ),
        (
            lambda t: t.replace("cores = 4", 'cores = "four"'),
            r"raspberry-pi-4\.toml: cores: expected an integer >= 1, got 'four'",
        ),
        (
            lambda t: t.replace('name = "raspberry-pi-4"', 'name = "pi4"'),
            r"raspberry-pi-4\.toml: name: expected 'raspberry-pi-4' \(the file name\), got 'pi4'",
        ),
        (lambda t: "bogus = 1\n" + t, r"raspberry-pi-4\.toml: bogus: expected one of"),
        (
            lambda t: t + "\nbogus = 1\n",
            r"raspberry-pi-4\.toml: budgets\.bogus: expected one of",
        ),
        (lambda t: t + "\n[[[broken", r"raspberry-pi-4\.toml: not valid TOML"),
    ],
)
def test_validation_errors_name_file_and_field(tmp_path, edit, message):
    path = _write(tmp_path, edit)
    with pytest.raises(ProfileError, match=message):
        load_profile(path)


def test_missing_budgets_table(tmp_path):
    text = (PROFILE_DIR / "x86_64-cpu.toml").read_text()
    data = tomllib.loads(text)
    assert "budgets" in data
    path = tmp_path / "x86_64-cpu.toml"
    path.write_text(text.split("[budgets]")[0])
    with pytest.raises(
        ProfileError, match=r"x86_64-cpu\.toml: budgets: expected a table, got None"
    ):
        load_profile(path)


@pytest.mark.parametrize(
    ("sample", "expected", "method"),
    [
        ("jetson-orin-nano", "jetson-orin-nano", "device-tree model"),
        ("jetson-xavier-nx", "jetson-xavier-nx", "device-tree model"),
        ("raspberry-pi-4", "raspberry-pi-4", "device-tree model"),
        ("raspberry-pi-5", "raspberry-pi-5", "device-tree model"),
        ("rockchip-rk3588", "rockchip-rk3588", "device-tree model"),
        ("x86_64", "x86_64-cpu", "architecture fallback"),
        ("jetson-orin-nano-container", "jetson-orin-nano", "l4t + cpu parts"),
    ],
)
def test_detection_on_recorded_samples(sample, expected, method):
    found = detect(SAMPLES / sample)
    assert found.profile.name == expected
    assert found.method == method and found.exact
    assert detect_profile(SAMPLES / sample).name == expected


def test_detection_reads_the_jetson_release_and_cpu_facts():
    facts = detect(SAMPLES / "jetson-xavier-nx").facts
    assert facts.l4t_release == "R35" and facts.cpu_count == 6
    assert facts.model == "NVIDIA Jetson Xavier NX Developer Kit"  # NUL stripped
    assert detect(SAMPLES / "rockchip-rk3588").facts.cpu_parts.count("0xd0b") == 4


def test_unknown_arm64_board_falls_back_to_generic(caplog):
    found = detect(SAMPLES / "unknown-arm64")
    assert found.profile.name == "rockchip-rk3588"
    assert not found.exact and found.method == "architecture fallback"
    assert "Pine64 RockPro64" in caplog.text


def test_empty_root_cannot_be_detected(tmp_path):
    with pytest.raises(
        ProfileError, match="expected an aarch64 or x86_64 board, got arch 'unknown'"
    ):
        detect_profile(tmp_path)


def test_this_host_is_detected_with_its_own_architecture():
    """Whatever the host (an x86_64 workstation or an ARM64 board), detection on ``/``
    gives a profile of its architecture."""
    machine = platform.machine().lower()
    assert detect_profile("/").arch == {"arm64": "aarch64", "amd64": "x86_64"}.get(machine, machine)


def test_cli_lists_profiles_and_detects_a_sample():
    from edgefleet.hardware._cli import app
    from typer.testing import CliRunner

    runner = CliRunner()
    res = runner.invoke(app, ["profiles"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for name in TARGETS:
        assert name in res.output
    res = runner.invoke(app, ["detect", "--root", str(SAMPLES / "jetson-xavier-nx")])
    assert res.exit_code == 0
    assert "jetson-xavier-nx: by device-tree model" in res.output
    res = runner.invoke(app, ["detect", "--root", str(SAMPLES / "unknown-arm64")])
    assert "rockchip-rk3588 (generic fallback)" in res.output


def test_aarch64_process_on_x86_cpuinfo_is_a_guess_not_x86(monkeypatch):
    """qemu-user passes the host's /proc/cpuinfo through: this x86 host's live cpuinfo read by
    a process whose platform.machine() says aarch64 must not give x86_64-cpu, exact."""
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    found = detect("/")
    assert found.profile.arch == "aarch64" and found.profile.name != "x86_64-cpu"
    assert not found.exact
    assert "describes an x86_64 CPU but this process runs aarch64" in found.guess
    assert found.facts.arch == "aarch64" and found.facts.cpu_parts == ()


@pytest.mark.parametrize("machine", ["aarch64", "arm64"])
def test_recorded_x86_tree_under_an_arm64_process_is_a_guess(machine):
    found = detect(SAMPLES / "x86_64", machine=machine)
    assert found.profile.name == "rockchip-rk3588" and not found.exact
    assert "qemu-user" in found.guess and "generic aarch64 profile" in found.guess


def test_matching_arch_keeps_an_exact_detection():
    pi = detect(SAMPLES / "raspberry-pi-4", machine="aarch64")
    assert pi.profile.name == "raspberry-pi-4" and pi.exact and pi.guess == ""
    x86 = detect(SAMPLES / "x86_64", machine="x86_64")
    assert x86.profile.name == "x86_64-cpu" and x86.exact and x86.guess == ""
    container = detect(SAMPLES / "jetson-orin-nano-container", machine="aarch64")
    assert container.profile.name == "jetson-orin-nano" and container.exact


def test_board_names_of_another_arch_are_not_trusted():
    """A Pi's device tree read by an x86_64 process (a mounted image): the running arch wins,
    the model cannot make it a Pi, and the answer says it is a guess."""
    found = detect(SAMPLES / "raspberry-pi-4", machine="x86_64")
    assert found.profile.name == "x86_64-cpu" and not found.exact
    assert "describes an aarch64 CPU but this process runs x86_64" in found.guess


def test_unknown_board_guess_names_the_model():
    found = detect(SAMPLES / "unknown-arm64", machine="aarch64")
    assert "Pine64 RockPro64" in found.guess and not found.exact


def test_cli_detect_says_when_it_guesses():
    from edgefleet.hardware._cli import app
    from typer.testing import CliRunner

    res = CliRunner().invoke(
        app, ["detect", "--root", str(SAMPLES / "x86_64"), "--machine", "aarch64"],
        env={"COLUMNS": "300"},
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "rockchip-rk3588 (generic fallback)" in res.output
    assert "guess: /proc/cpuinfo describes an x86_64 CPU" in res.output


def test_boolean_runtime_options_are_checked(tmp_path):
    import tomllib

    from edgefleet.hardware.profiles import profile_from_dict

    data = tomllib.loads((PROFILE_DIR / "jetson-orin-nano.toml").read_text())
    data["runtimes"][0]["options"]["tensorrt_fp16"] = "yes"
    with pytest.raises(ProfileError, match=r"runtimes\[0\]\.options\.tensorrt_fp16: expected true"):
        profile_from_dict(data, "jetson.toml")
