"""Session-wide fixtures: a real Mosquitto broker, signing keys, the tiny generative
packages and their torch reference."""

from __future__ import annotations

import pytest

from tests.support.mosquitto import Mosquitto


@pytest.fixture(scope="session")
def mosquitto():
    """One real Mosquitto for the session (tests that stop a broker start their own)."""
    with Mosquitto() as broker:
        yield broker


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory):
    """(private key path, public key path) of a fresh Ed25519 pair."""
    from edgefleet.sdk import generate_keypair

    return generate_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def genai_llm():
    """The tiny causal LM packaged for ONNX Runtime GenAI at fp32, int8 and int4."""
    pytest.importorskip("onnxruntime_genai")
    pytest.importorskip("transformers")
    from tests.support.llm import tiny_llm

    return tiny_llm()


@pytest.fixture(scope="session")
def pte_llm():
    """The same model packaged as ExecuTorch ``.pte`` programs (fp32, int4) next to GenAI
    int4."""
    pytest.importorskip("executorch")
    pytest.importorskip("onnxruntime_genai")
    pytest.importorskip("transformers")
    from tests.support.llm import tiny_pte_llm

    return tiny_pte_llm()


@pytest.fixture(scope="session")
def llm_reference(genai_llm):
    """The transformers model both packages were verified against (one torch thread)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    return AutoModelForCausalLM.from_pretrained(str(genai_llm.hf_folder)).eval()
