"""Raw text in: a tiny BERT-like encoder (transformers config, random weights) exported to
ONNX with dynamic batch and sequence, its tokenizer.json (a WordLevel tokenizer trained on
generated text) carried in the package; ``predict_text`` tokenizes with ``tokenizers``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from edgefleet.sdk import (
    ConfigError,
    InputError,
    PackageBuilder,
    PackageError,
    Preprocessing,
    TensorSpec,
    TextPreprocessing,
    load,
)

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")

WORDS = [f"w{i}" for i in range(40)]


def _corpus(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(2, 12))) for _ in range(n)]


def _tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        _corpus(200, 0), trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"])
    )
    tok.save(str(path))
    return path


@pytest.fixture(scope="module")
def text_pkg(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("text")
    tok_path = _tokenizer(d / "tokenizer.json")
    from tests.support.torch_models import _quiet_exporters

    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )  # fmt: skip
    bert = transformers.BertModel(cfg).eval()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask)
            return out.last_hidden_state, out.pooler_output

    model = Encoder().eval()
    ids = torch.ones((2, 7), dtype=torch.int64)
    dyn = {0: "batch", 1: "sequence"}
    with _quiet_exporters():
        torch.onnx.export(
            model, (ids, torch.ones_like(ids)), str(d / "bert.onnx"),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state", "pooler_output"],
            dynamic_axes={"input_ids": dyn, "attention_mask": dyn, "last_hidden_state": dyn,
                          "pooler_output": {0: "batch"}},
            dynamo=False, opset_version=17,
        )  # fmt: skip
    inputs = [
        TensorSpec(name="input_ids", dtype="int64", shape=["batch", "sequence"]),
        TensorSpec(name="attention_mask", dtype="int64", shape=["batch", "sequence"]),
    ]
    outputs = [
        TensorSpec(name="last_hidden_state", dtype="float32", shape=["batch", "sequence", 32]),
        TensorSpec(name="pooler_output", dtype="float32", shape=["batch", 32]),
    ]
    text = TextPreprocessing(tokenizer="files/tokenizer.json", max_length=16, pad_token_id=0)
    with PackageBuilder(
        "tiny-bert", "1.0.0", inputs=inputs, outputs=outputs, task="embedding",
        preprocessing=Preprocessing(text=text),
    ) as b:  # fmt: skip
        b.add_file(tok_path, role="tokenizer")
        golden = {
            "input_ids": np.ones((1, 5), np.int64),
            "attention_mask": np.ones((1, 5), np.int64),
        }
        b.set_golden_inputs(golden)
        with torch.no_grad():
            ref = [t.numpy() for t in model(*(torch.from_numpy(v) for v in golden.values()))]
        b.add_artifact(
            d / "bert.onnx", format="onnx", precision="fp32",
            golden_outputs={"last_hidden_state": ref[0], "pooler_output": ref[1]},
        )  # fmt: skip
        pkg = b.build(d / "tiny-bert.efpkg")
    return pkg, model, tok_path


def test_predict_text_matches_torch_on_the_same_tokens(text_pkg):
    import torch
    from tokenizers import Tokenizer

    pkg, model, tok_path = text_pkg
    texts = ["w1 w2 w3", "w5 w9", "w7 " * 30 + "w8", "w39 unknownword w0"]
    tok = Tokenizer.from_file(str(tok_path))
    tok.enable_padding(pad_id=0)
    tok.enable_truncation(16)
    enc = tok.encode_batch(texts)
    ids = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc])
    assert ids.shape == (4, 16)  # padded to the longest, truncated at max_length
    assert mask[1].sum() == 2 and ids[3, 1] == tok.token_to_id("[UNK]")
    with torch.no_grad():
        want_h, want_p = (t.numpy() for t in model(ids, mask))
    with load(pkg) as m:
        out = m.predict_text(texts)
        assert m.smoke_test().passed
        assert m.package.manifest.files[0].role == "tokenizer"
        np.testing.assert_allclose(out["pooler_output"], want_p, atol=1e-4)
        np.testing.assert_allclose(out["last_hidden_state"], want_h, atol=1e-4)
        one = m.predict_text("w1 w2 w3")
        np.testing.assert_allclose(one["pooler_output"][0], out["pooler_output"][0], atol=1e-4)
        with pytest.raises(InputError, match="non-empty list of strings"):
            m.predict_text([1, 2])


def test_predict_text_errors(text_pkg, tmp_path):
    from tests.support.text_models import make_encoder_package

    plain = make_encoder_package(tmp_path / "plain")
    with load(plain) as m, pytest.raises(ConfigError, match="declares no text preprocessing"):
        m.predict_text(["w1"])
    # a tokenizer that is not a signed package file is refused
    import json
    import shutil

    pkg, _, tok_path = text_pkg
    d = tmp_path / "unlisted"
    from edgefleet.sdk import extract_archive

    extract_archive(pkg, d)
    m = json.loads((d / "manifest.json").read_text())
    m["files"] = [f for f in m["files"] if f["role"] != "tokenizer"]
    (d / "manifest.json").write_text(json.dumps(m))
    shutil.copyfile(tok_path, d / "files" / "tokenizer.json")
    with load(d) as model, pytest.raises(PackageError, match="not covered by the signature"):
        model.predict_text(["w1"])


def test_without_tokenizers_the_error_names_the_extra(text_pkg):
    pkg, _, _ = text_pkg
    code = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "tokenizers" or name.startswith("tokenizers."):
                    raise ImportError("blocked for the test")
        sys.meta_path.insert(0, Block())
        from edgefleet.sdk import load, BackendUnavailableError
        with load({str(pkg)!r}) as m:
            try:
                m.predict_text(["w1"])
            except BackendUnavailableError as e:
                print("ERR", e)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (
        "ERR predict_text needs the tokenizers library: pip install 'edgefleet[text]'" in r.stdout
    ), r.stderr
