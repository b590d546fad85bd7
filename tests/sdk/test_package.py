"""Model packages: round trip, signatures, hashes, and hostile archives."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from edgefleet.sdk import (
    PackageError,
    SignatureError,
    TrustPolicy,
    generate_keypair,
    load_private_key,
    load_public_key,
    open_package,
)
from edgefleet.sdk._manifest_schema import SCHEMA_PATH, render_manifest_schema

from tests.support.packages import make_package


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("pkgkeys")
    priv, pub = generate_keypair(d, "a")
    priv2, pub2 = generate_keypair(d, "b")
    return priv, pub, priv2, pub2


def test_archive_round_trip_signed(tmp_path, keys):
    priv, pub, *_ = keys
    path = make_package(tmp_path / "t.efpkg", signing_key=priv, version="1.2.3")
    with open_package(path, TrustPolicy.device(pub)) as pkg:
        assert pkg.manifest.version == "1.2.3"
        assert pkg.signed_by is not None and "verified" in pkg.signature_state
        assert pkg.golden_inputs()["input"].shape == (4, 16)
        art = pkg.manifest.artifacts[0]
        assert pkg.golden_outputs(art)["logits"].shape == (4, 10)
        root = pkg.root
        assert root.exists()
    assert not root.exists(), "the temporary extraction is removed on close"


def test_directory_package_and_deterministic_archive(tmp_path, keys):
    priv, *_ = keys
    d = make_package(tmp_path / "dir", signing_key=priv)
    assert (d / "manifest.json").is_file()
    a = make_package(tmp_path / "a.efpkg", seed=3)
    b = make_package(tmp_path / "b.efpkg", seed=3)
    # same content -> same manifest apart from created_at; archive entries sorted
    with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
        assert za.namelist() == zb.namelist() == sorted(za.namelist())


def test_unsigned_refused_on_device_allowed_on_workstation(tmp_path, keys):
    _, pub, *_ = keys
    path = make_package(tmp_path / "u.efpkg")
    with pytest.raises(SignatureError, match="not signed"):
        open_package(path, TrustPolicy.device(pub))
    with open_package(path) as pkg:
        assert pkg.signature_state == "unsigned"


def test_untrusted_key_and_tampered_manifest(tmp_path, keys):
    priv, pub, priv2, pub2 = keys
    path = make_package(tmp_path / "d", signing_key=priv2)
    with pytest.raises(SignatureError, match="not among the trusted keys"):
        open_package(path, TrustPolicy.device(pub))
    # A workstation policy with the right key still checks it
    with open_package(path, TrustPolicy.workstation(pub2)) as pkg:
        assert pkg.signed_by
    m = json.loads((path / "manifest.json").read_text())
    m["version"] = "9.9.9"
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(SignatureError, match="does not verify"):
        open_package(path, TrustPolicy.device(pub2))


def test_corrupt_and_missing_artifacts(tmp_path):
    d = make_package(tmp_path / "d")
    art = next((d / "artifacts").iterdir())
    data = bytearray(art.read_bytes())
    data[100] ^= 0xFF
    art.write_bytes(bytes(data))
    with pytest.raises(PackageError, match="expected sha256"):
        open_package(d)
    art.write_bytes(bytes(data[:50]))
    with pytest.raises(PackageError, match="expected .* bytes"):
        open_package(d)
    art.unlink()
    with pytest.raises(PackageError, match="is missing"):
        open_package(d)


def test_bad_manifest_names_the_field(tmp_path):
    d = make_package(tmp_path / "d")
    m = json.loads((d / "manifest.json").read_text())
    m["version"] = "one"
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PackageError, match="version"):
        open_package(d)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(PackageError, match="not valid JSON"):
        open_package(d)
    with pytest.raises(PackageError, match="no package at"):
        open_package(tmp_path / "nope.efpkg")


def _repack(src: Path, out: Path, extra: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(src) as zs, zipfile.ZipFile(out, "w") as zo:
        for info in zs.infolist():
            zo.writestr(info, zs.read(info))
        for name, data in extra:
            zo.writestr(name, data)
    return out


@pytest.mark.parametrize(
    "entry", ["../evil.txt", "/abs/evil.txt", "artifacts/../../evil.txt", "C:/evil.txt"]
)
def test_zip_slip_refused(tmp_path, entry):
    good = make_package(tmp_path / "g.efpkg")
    bad = tmp_path / "bad.efpkg"
    with zipfile.ZipFile(good) as zs, zipfile.ZipFile(bad, "w") as zo:
        for info in zs.infolist():
            zo.writestr(info, zs.read(info))
        info = zipfile.ZipInfo("placeholder")
        info.filename = entry  # bypass ZipInfo's own normalisation
        zo.writestr(info, b"x")
    with pytest.raises(PackageError, match="escapes the package"):
        open_package(bad)
    assert not (tmp_path / "evil.txt").exists()


def test_symlink_and_duplicate_entries_refused(tmp_path):
    good = make_package(tmp_path / "g.efpkg")
    link = zipfile.ZipInfo("artifacts/link")
    link.external_attr = 0o120777 << 16
    with pytest.raises(PackageError, match="symlink"):
        open_package(_repack(good, tmp_path / "l.efpkg", [(link, b"/etc/passwd")]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate we write on purpose
        dup = _repack(good, tmp_path / "d.efpkg", [("manifest.json", b"{}")])
    with pytest.raises(PackageError, match="duplicate"):
        open_package(dup)


def test_symlinked_artifact_in_directory_refused(tmp_path):
    d = make_package(tmp_path / "d")
    art = next((d / "artifacts").iterdir())
    real = tmp_path / "real.onnx"
    art.rename(real)
    os.symlink(real, art)
    with pytest.raises(PackageError, match="symlink"):
        open_package(d)


def test_not_a_zip(tmp_path):
    p = tmp_path / "junk.efpkg"
    p.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(PackageError, match="not a readable"):
        open_package(p)


def test_keys_never_overwritten(tmp_path):
    generate_keypair(tmp_path, "k")
    with pytest.raises(Exception, match="refusing to overwrite"):
        generate_keypair(tmp_path, "k")
    assert oct((tmp_path / "k.key").stat().st_mode & 0o777) == "0o600"
    load_private_key(tmp_path / "k.key")
    load_public_key(tmp_path / "k.pub")
    with pytest.raises(SignatureError):
        load_public_key(tmp_path / "k.key")


def test_manifest_schema_file_is_current():
    assert SCHEMA_PATH.read_text() == render_manifest_schema(), (
        "sdk/manifest.schema.json is stale: run python -m edgefleet.sdk._manifest_schema"
    )


# A package written by schema-1 code (tests/sdk/data/v1-fixture, signed with a fixed test
# key before any field was added) must keep verifying as the manifest model grows.
V1_FIXTURE = Path(__file__).parent / "data" / "v1-fixture"
V1_PUB = Path(__file__).parent / "data" / "v1-test.pub"


def test_package_written_by_schema_1_still_verifies():
    pkg = open_package(V1_FIXTURE, TrustPolicy.device(V1_PUB))
    assert pkg.signed_by == pkg.manifest.signature.key_id
    assert pkg.manifest.metric is None and pkg.manifest.files == []
    pkg.close()


def test_new_field_is_signed_once_set(tmp_path):
    import json
    import shutil

    copy = tmp_path / "pkg"
    shutil.copytree(V1_FIXTURE, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["pad_values"] = {"input": 0.0}  # a post-schema-1 field added after signing
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(SignatureError):
        open_package(copy, TrustPolicy.device(V1_PUB))
