"""A tiny generative package built once per test process: a Llama-style LM (hidden 64,
2 layers) trained for a few seconds on the recipe's generated text, exported by the real
ONNX Runtime GenAI model builder at fp32, int8 and int4, verified and signed.

Test modules share it through :func:`tiny_llm` (the session fixtures ``genai_llm`` and
``pte_llm`` in ``tests/conftest.py``); the torch reference model comes along so parity
tests compare with what the package was verified against.
"""

from __future__ import annotations

import atexit
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TinyLLM", "tiny_llm", "tiny_pte_llm", "tiny_recipe"]

_BUILT: dict[str, TinyLLM] = {}


@dataclass(frozen=True)
class TinyLLM:
    package: Path
    public_key: Path
    private_key: Path
    hf_folder: Path
    result: object  # LLMResult

    def open(self):
        """The package opened under a device trust policy for its own signing key."""
        from edgefleet.sdk import TrustPolicy, open_package

        return open_package(self.package, TrustPolicy.device(self.public_key))

    def load(self, backend: str | None = None, *, path: Path | None = None, **options):
        """The package (or the one at ``path``) loaded for generation, on ``backend`` or
        the automatic choice; one intra-op thread unless ``generation`` says otherwise.
        Other keywords are :class:`edgefleet.sdk.LoadOptions` fields."""
        import edgefleet.sdk as ef

        gen = options.pop("generation", ef.GenerateOptions(intra_op_threads=1))
        opts = ef.LoadOptions(generation=gen, **options)
        return ef.load(path or self.package, backend, options=opts)


def tiny_recipe(**overrides):
    from edgefleet.trainer import LLMRecipe

    data = {
        "kind": "causal-lm",
        "name": "tiny-lm",
        "version": "1.0.0",
        "model": {"hidden_size": 64, "intermediate_size": 128, "layers": 2, "heads": 4,
                  "kv_heads": 2, "context_length": 256},
        "train": {"samples": 800, "heldout": 16, "steps": 120, "batch_size": 16,
                  "lr": 0.006, "threads": 1},
        "verify": {"prompts": 8, "continuation_tokens": 12, "golden_prompts": 3,
                   "floor": 0.9},
    }  # fmt: skip
    for k, v in overrides.items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    return LLMRecipe.model_validate(data)


def tiny_llm() -> TinyLLM:
    """Build (once per process) and return the tiny generative package."""
    if "pkg" in _BUILT:
        return _BUILT["pkg"]
    from edgefleet.sdk import generate_keypair
    from edgefleet.trainer import run_llm_recipe

    keep = os.environ.get("EDGEFLEET_TEST_LLM_DIR")  # developers: reuse one build across runs
    if keep and (Path(keep) / "result.pkl").is_file():
        _BUILT["pkg"] = pickle.loads((Path(keep) / "result.pkl").read_bytes())
        return _BUILT["pkg"]
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="edgefleet-tiny-llm-"))
    if not keep:
        atexit.register(shutil.rmtree, root, True)
    priv, pub = generate_keypair(root / "keys")
    recipe = tiny_recipe()
    hf = root / "reference"
    result = run_llm_recipe(recipe, root / "out", signing_key=priv, save_reference=hf)
    if keep:
        (root / "result.pkl").write_bytes(
            pickle.dumps(TinyLLM(result.package, pub, priv, hf, result))
        )
    _BUILT["pkg"] = TinyLLM(result.package, pub, priv, hf, result)
    return _BUILT["pkg"]


def tiny_pte_llm() -> TinyLLM:
    """The tiny model's trained folder packaged for both generation runtimes: ExecuTorch
    ``.pte`` (fp32 and 8da4w int4, static KV cache, XNNPACK) and GenAI int4, built once per
    process (the pte lowering takes a minute or two per precision on a shared 2-core box)."""
    if "pte" in _BUILT:
        return _BUILT["pte"]
    from edgefleet.trainer import run_llm_recipe

    base = tiny_llm()
    recipe = tiny_recipe(
        name="tiny-lm-pte",
        model={"source": str(base.hf_folder)},
        export={"formats": ["ort-genai", "pte"], "precisions": ["fp32", "int4"]},
    )
    out = Path(tempfile.mkdtemp(prefix="edgefleet-tiny-pte-"))
    atexit.register(shutil.rmtree, out, True)
    result = run_llm_recipe(recipe, out, signing_key=base.private_key)
    _BUILT["pte"] = TinyLLM(result.package, base.public_key, base.private_key,
                            base.hf_folder, result)  # fmt: skip
    return _BUILT["pte"]
