"""The device smoke test of a generative package: greedy continuations of the golden prompts
compared token by token with the torch reference's continuations.

Golden data (written by the trainer): ``Manifest.golden_inputs`` holds ``input_ids``
(prompts, right-padded) and ``lengths``; each artifact's ``golden_outputs`` holds
``tokens``, the reference continuation (the EOS id where it stopped, -1 after). The
tolerance is the artifact's own match measured when it was packaged
(``metrics.scores["golden_token_match"]``): a device must reproduce at least that.
"""

from __future__ import annotations

import logging

import numpy as np

from ._errors import PackageError

__all__ = ["continuation_tokens", "token_match", "smoke_test"]

log = logging.getLogger(__name__)


def continuation_tokens(generated: list[int], eos: int | None, n: int) -> np.ndarray:
    """Fixed-length form of a continuation: tokens, then the EOS id if it stopped there,
    then -1."""
    out = np.full(n, -1, dtype=np.int64)
    seq = list(generated)[:n]
    if len(seq) < n and eos is not None:
        seq.append(eos)
    out[: len(seq)] = seq
    return out


def token_match(got: np.ndarray, want: np.ndarray) -> float:
    """Fraction of equal positions over all continuations."""
    return float(np.mean(got == want)) if want.size else 1.0


def smoke_test(model):
    from ._model import SmokeResult

    pkg, art = model.package, model.info.artifact
    try:
        golden = pkg.golden_inputs()
        want = pkg.golden_outputs(art)["tokens"]
        ids, lengths = golden["input_ids"], golden["lengths"]
    except (PackageError, KeyError) as e:
        return SmokeResult(False, float("inf"), f"golden data unusable: {e}")
    eos = (model.info.generation.eos_token_ids or [None])[0]
    n = want.shape[1]
    try:
        got = np.stack(
            [
                continuation_tokens(_greedy(model, ids[i, : int(lengths[i])], n), eos, n)
                for i in range(len(lengths))
            ]
        )
    except Exception as e:
        return SmokeResult(False, float("inf"), f"golden prompts failed to generate: {e}")
    match = token_match(got, want)
    floor = (art.metrics.scores.get("golden_token_match", 1.0) if art.metrics else 1.0) - 1e-9
    detail = f"greedy token match {match:.4f} vs reference (packaged: {floor + 1e-9:.4f})"
    return SmokeResult(match >= floor, 1.0 - match, detail)


def _greedy(model, ids: np.ndarray, n: int) -> list[int]:
    stream = model.generate(ids.astype(np.int32), max_new_tokens=n, temperature=0.0)
    for _ in stream:
        pass
    return stream.token_ids
