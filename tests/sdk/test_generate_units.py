"""Units of generation that need no model: the prefix cache's bookkeeping, sampling, and
the stop-string holding of the text emitter."""

from __future__ import annotations

import numpy as np
import pytest
from edgefleet.sdk import ConfigError, InputError, PrefixCache, SamplingParams
from edgefleet.sdk._sampling import sample


def test_prefix_cache_blocks_busy_entries_and_byte_bound():
    c = PrefixCache(max_bytes=250, block=4)
    toks = np.arange(1, 12, dtype=np.int32)  # 11 tokens -> cached head of 8
    assert c.cut(11) == 8 and c.cut(8) == 4 and c.cut(4) == 0
    assert c.acquire(toks) is None  # miss
    assert c.put(toks[:8], "state-a", 100)
    e = c.acquire(np.concatenate([toks[:8], [99, 98]]).astype(np.int32))
    assert e is not None and e.length == 8 and e.state == "state-a"
    # Busy: a second request with the same head is a miss, not a shared state.
    assert c.acquire(toks) is None
    c.release(e)
    # A shorter shared head still hits the longest cached block boundary it contains.
    assert c.put(toks[:4], "state-b", 100)
    e2 = c.acquire(np.concatenate([toks[:6], [7, 7, 7]]).astype(np.int32))
    assert e2.length == 4 and e2.state == "state-b"
    c.release(e2)
    assert c.put(np.arange(50, 58, dtype=np.int32), "state-c", 100)  # evicts the LRU entry
    st = c.stats()
    assert st.evictions == 1 and st.bytes == 200 and st.entries == 2
    assert not c.put(np.arange(60, 68, dtype=np.int32), "too-big", 251)
    assert (st.hits, st.misses) == (2, 2) and st.hit_rate == 0.5
    assert c.acquire(np.arange(3, dtype=np.int32)) is None and c.stats().misses == 2  # short
    with pytest.raises(ConfigError):
        PrefixCache(max_bytes=-1)


def test_sampling_respects_top_k_top_p_and_seed():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    p = SamplingParams.build(max_new_tokens=1, temperature=1.0, top_k=2)
    draws = {sample(logits, p, np.random.default_rng(s)) for s in range(200)}
    assert draws == {0, 1}
    p = SamplingParams.build(max_new_tokens=1, temperature=1.0, top_p=0.6)
    assert {sample(logits, p, np.random.default_rng(s)) for s in range(200)} == {0, 1}
    p = SamplingParams.build(max_new_tokens=1, temperature=1.0, seed=3)
    a = [sample(logits, p, np.random.default_rng(3)) for _ in range(5)]
    assert a == [sample(logits, p, np.random.default_rng(3)) for _ in range(5)]
    assert SamplingParams.build(max_new_tokens=1).greedy
    assert SamplingParams.build(max_new_tokens=1, temperature=0.7, seed=1).deterministic
    assert not SamplingParams.build(max_new_tokens=1, temperature=0.7).deterministic
    for bad in ({"max_new_tokens": 0}, {"max_new_tokens": 1, "top_p": 0.0},
                {"max_new_tokens": 1, "top_k": -1}, {"max_new_tokens": 1, "stop": ("",)},
                {"max_new_tokens": 1, "seed": -2}):  # fmt: skip
        with pytest.raises(InputError):
            SamplingParams.build(**bad)


def test_text_emitter_never_leaks_a_stop_string(tmp_path):
    pytest.importorskip("tokenizers")
    from edgefleet.sdk._chat import TextCodec, TextEmitter
    from edgefleet.trainer._llm_data import write_char_tokenizer

    write_char_tokenizer(tmp_path)
    codec = TextCodec(tmp_path / "tokenizer.json", bos_token_id=1)
    ids = codec.encode("abc stop here")[1:]
    em = TextEmitter(codec, ("stop",))
    out, stopped = "", False
    for t in ids:
        text, stopped = em.push(int(t))
        out += text
        if stopped:
            break
    assert stopped and out == "abc "
    em = TextEmitter(codec, ("zz",))
    out = "".join(em.push(int(t))[0] for t in codec.encode("hello")[1:]) + em.flush()
    assert out == "hello"
