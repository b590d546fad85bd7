"""Generation on a device: a real generative package installed in the A/B store, served by
the local endpoint (OpenAI-compatible subset, SSE read with plain HTTP), the staged-package
smoke test (greedy continuations vs the reference), and generation telemetry."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request

import pytest

pytest.importorskip("onnxruntime_genai")

from edgefleet.device_agents import ActiveModel, LocalEndpoint, ModelStore
from edgefleet.device_agents._telemetry_queue import system_sample
from edgefleet.sdk import LoadOptions, TrustPolicy, load

pytestmark = pytest.mark.slow


@pytest.fixture
def endpoint(genai_llm, tmp_path):
    store = ModelStore(tmp_path / "store")
    policy = TrustPolicy.device(genai_llm.public_key)
    store.install(genai_llm.package, policy)
    ep = LocalEndpoint(ActiveModel(store, trust=policy), "127.0.0.1:0").start()
    yield ep
    ep.stop()
    ep.active.close()


def _post(url: str, body) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _sse(address: str, path: str, body: dict) -> tuple[str, list]:
    """POST and read Server-Sent Events line by line, as an OpenAI client does."""
    host, port = address.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    ctype = resp.getheader("Content-Type")
    events = []
    for raw in resp:
        line = raw.decode().rstrip("\n")
        if not line:
            continue
        assert line.startswith("data: "), line
        data = line[6:]
        events.append(data if data == "[DONE]" else json.loads(data))
    conn.close()
    return ctype, events


def test_chat_completions_match_the_sdk(endpoint, genai_llm):
    msgs = [{"role": "user", "content": "what is 3 plus 4?"}]
    code, body = _post(f"{endpoint.address}/v1/chat/completions",
                       {"model": "whatever", "messages": msgs, "max_tokens": 12})  # fmt: skip
    assert code == 200, body
    assert body["object"] == "chat.completion" and body["model"] == "tiny-lm@1.0.0"
    [choice] = body["choices"]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in (
        "stop",
        "length",
    )
    with load(genai_llm.package, options=LoadOptions(cache=None)) as m:
        want = m.generate(msgs, max_new_tokens=12).text()
    assert choice["message"]["content"] == want
    u = body["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and u["ttft_ms"] > 0


def test_streamed_chat_is_sse_and_adds_up(endpoint):
    msgs = [{"role": "system", "content": "answer"}, {"role": "user", "content": "2 plus 2?"}]
    body = {"messages": msgs, "max_tokens": 16, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    ctype, events = _sse(endpoint.address, "/v1/chat/completions", body)
    assert ctype == "text/event-stream"
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] in ("stop", "length") and all(f is None for f in finish[:-1])
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] >= 1
    # The same request without streaming gives the same text (greedy).
    code, whole = _post(f"{endpoint.address}/v1/chat/completions",
                        {"messages": msgs, "max_tokens": 16})  # fmt: skip
    assert code == 200 and whole["choices"][0]["message"]["content"] == text


def test_completions_stream_and_stop(endpoint):
    body = {"prompt": "the red cat", "max_tokens": 20, "stream": True}
    _, events = _sse(endpoint.address, "/v1/completions", body)
    text = "".join(e["choices"][0]["text"] for e in events[:-1])
    code, whole = _post(f"{endpoint.address}/v1/completions", {**body, "stream": False})
    assert code == 200 and whole["object"] == "text_completion"
    assert whole["choices"][0]["text"] == text
    stop = text.strip()[:2]
    code, cut = _post(f"{endpoint.address}/v1/completions",
                      {"prompt": "the red cat", "max_tokens": 20, "stop": stop})  # fmt: skip
    assert code == 200 and stop not in cut["choices"][0]["text"]
    assert cut["choices"][0]["finish_reason"] == "stop"


def test_client_mistakes_are_4xx(endpoint):
    a = endpoint.address
    cases = [
        ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, "role"),
        ("/v1/chat/completions", {"messages": "hi"}, "messages"),
        ("/v1/completions", {"prompt": "x" * 400}, "context"),
        ("/v1/completions", {"prompt": "hi", "max_tokens": 10_000}, "max_new_tokens"),
        ("/v1/completions", {"prompt": "hi", "max_tokens": "ten"}, "max_tokens"),
        ("/v1/completions", {"prompt": "hi", "temperature": True}, "temperature"),
        ("/v1/completions", {"prompt": "hi", "n": 3}, "n=1"),
        ("/v1/completions", {"prompt": "hi", "stop": [1]}, "stop"),
        ("/v1/predict", {"inputs": {"input_ids": [[1, 2]]}}, "generative"),
    ]
    for path, body, word in cases:
        code, resp = _post(a + path, body)
        err = resp["error"]
        msg = err["message"] if isinstance(err, dict) else err
        assert code == 400 and word in msg, (path, body, code, resp)
    assert _post(a + "/v1/completions", b"{not json")[0] == 400
    assert endpoint.traffic()[1] == 0  # client mistakes are not model errors


def test_model_and_metrics_routes_and_telemetry(endpoint):
    a = endpoint.address
    with urllib.request.urlopen(a + "/v1/model") as r:
        info = json.loads(r.read())
    assert info["task"] == "text-generation" and info["precision"] == "int4"
    assert info["context_length"] == 256 and info["chat_template"] is True
    prefix = "the small dog sees the red cat on the mat. " * 4
    for q in ("q: 1+1= a:", "q: 2+5= a:", "q: 9+3= a:"):
        assert _post(a + "/v1/completions", {"prompt": prefix + q, "max_tokens": 4})[0] == 200
    with urllib.request.urlopen(a + "/v1/metrics") as r:
        m = json.loads(r.read())
    assert m["requests"] == 3 and m["tokens_generated"] >= 3
    assert m["prefix_cache_hits"] == 2 and m["prefix_cache_hit_rate"] == pytest.approx(2 / 3)
    snap = endpoint.active.model.metrics.snapshot(reset=True)
    sample = system_sample(None, snap, "tiny-lm@1.0.0")
    g = sample.generation
    assert sample.calls == 3 and g.tokens_generated == snap.tokens_generated
    assert g.ttft_p95_ms >= g.ttft_p50_ms > 0 and g.decode_tokens_per_s > 0
    assert (g.prefix_cache_hits, g.prefix_cache_misses) == (2, 1)
    assert sample.latency_p95_ms == g.ttft_p95_ms
