"""``edgefleet demo --generative``: after the digits rollout, the tiny LM goes to the same
boards in waves gated on decode tokens/s and TTFT; each wave's figures come from the fleet's
telemetry; then one board streams an answer over Server-Sent Events from its local,
OpenAI-compatible endpoint, read with a plain HTTP client as any SSE client would."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from edgefleet.sdk import EdgefleetError

from ._board_views import backends, local_models
from ._local_fleet import wait_for
from ._plan import rollout_body

if TYPE_CHECKING:
    from edgefleet.fleet import FleetClient

    from ._orchestrator import Demo

__all__ = ["StreamedAnswer", "WaveFigures", "run_generative", "stream_answer"]

log = logging.getLogger(__name__)

_WAVE_NAMES = ("canary", "wave 1", "wave 2", "wave 3")


@dataclass(frozen=True)
class WaveFigures:
    """A wave's generation as the fleet learnt it from its boards' telemetry."""

    wave: int
    devices: tuple[str, ...]
    requests: int
    decode_tps: float | None  # requests-weighted, like the rollout gate
    ttft_p95_ms: float | None


@dataclass(frozen=True)
class StreamedAnswer:
    device_id: str
    text: str
    token_events: int  # SSE events that carried answer text
    events: int  # every SSE event before [DONE]
    usage: dict[str, Any]  # the board's usage record (the last event)
    client_ttft_ms: float  # request sent -> first text event, as the client saw it
    seconds: float


def generation_figures(
    client: FleetClient, model: str, devices: Iterable[str | None], since: float
) -> tuple[int, float | None, float | None]:
    """(requests, decode tokens/s, TTFT p95 ms) of ``model`` since ``since`` on ``devices``
    (None: the whole fleet), requests-weighted as the fleet's gate weighs them."""
    calls = tps_n = ttft_n = 0
    tps_w = ttft_w = 0.0
    for device in devices:
        for pt in client.telemetry(model, device=device, since=since, bucket_s=86400):
            calls += pt["calls"]
            if pt.get("decode_tps") is not None:
                tps_w, tps_n = tps_w + pt["decode_tps"] * pt["calls"], tps_n + pt["calls"]
            if pt.get("ttft_p95_ms") is not None:
                ttft_w, ttft_n = ttft_w + pt["ttft_p95_ms"] * pt["calls"], ttft_n + pt["calls"]
    return calls, (tps_w / tps_n if tps_n else None), (ttft_w / ttft_n if ttft_n else None)


def _wave_figures(
    client: FleetClient, model: str, wave: int, ids: list[str], since: float
) -> WaveFigures:
    """The wave's figures once every board of it has reported generation (a few seconds
    at most: the gate may pass on earlier waves' telemetry before this wave's arrives)."""
    deadline = time.monotonic() + 10.0
    while True:
        per = [generation_figures(client, model, [d], since) for d in ids]
        if all(tps is not None for _, tps, _ in per) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    n, tps, ttft = generation_figures(client, model, ids, since)
    return WaveFigures(wave, tuple(ids), n, tps, ttft)


def _describe(f: WaveFigures) -> str:
    name = _WAVE_NAMES[f.wave] if f.wave < len(_WAVE_NAMES) else f"wave {f.wave}"
    tps = f"{f.decode_tps:.0f} tok/s decode" if f.decode_tps is not None else "no decode yet"
    ttft = f"TTFT p95 {f.ttft_p95_ms:.1f} ms" if f.ttft_p95_ms is not None else "no TTFT yet"
    return f"{name} ({', '.join(f.devices)}): {tps}, {ttft} over {f.requests} requests"


def roll_out_generative(
    demo: Demo, name: str, version: str, since: float
) -> tuple[Any, list[WaveFigures]]:
    """Canary then waves to the demo's boards, gated on generation; each wave's figures
    (telemetry since ``since``) are shown as it passes. Returns (the finished rollout,
    figures per wave)."""
    ref = f"{name}@{version}"
    label = f"rolling out {ref}: canary, then waves gated on decode tok/s and TTFT"
    demo.ui.step(label)
    t0 = time.perf_counter()
    body = rollout_body(name, version, demo.devices.ids, demo.opts.soak_s, generative=True)
    figures: list[WaveFigures] = []

    def poll(ro) -> None:
        demo.ui.rollout(ro)
        passed = ro.wave_count if ro.status == "COMPLETED" else ro.current_wave
        while len(figures) < passed:
            w = len(figures)
            ids = [d.device_id for d in ro.devices if d.wave == w]
            figures.append(_wave_figures(demo.client, ref, w, ids, since))
            demo.ui.done(f"{_describe(figures[-1])}; gate passed")
            demo.ui.step(label)

    ro = demo.client.create_rollout(body)
    # The poll that sees COMPLETED runs before wait_rollout returns: the last wave is shown.
    ro = demo.client.wait_rollout(ro["id"], timeout=demo.opts.timeout_s, on_poll=poll)
    seconds = round(time.perf_counter() - t0, 1)
    demo.ui.done(f"rollout {ro['id']} {ro['status']} in {seconds}s ({ro['wave_count']} waves)")
    return ro, figures


def stream_answer(
    address: str,
    device_id: str,
    prompt: str,
    max_tokens: int,
    on_text: Callable[[str], None],
    timeout: float = 60.0,
) -> StreamedAnswer:
    """Ask the board at ``address`` (``http://host:port``) to go on with ``prompt``
    (``POST /v1/completions``, ``stream: true``) and hand each piece of the answer to
    ``on_text`` as its event arrives."""
    import httpx

    body = {
        "prompt": prompt,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    text: list[str] = []
    events = token_events = 0
    usage: dict[str, Any] = {}
    first = None
    try:
        with httpx.Client(timeout=timeout) as http:
            t0 = time.perf_counter()
            with http.stream("POST", f"{address}/v1/completions", json=body) as r:
                ctype = r.headers.get("content-type", "")
                if r.status_code != 200 or not ctype.startswith("text/event-stream"):
                    raise EdgefleetError(
                        f"{device_id} answered {r.status_code} {ctype}: "
                        f"{r.read().decode()[:300]}; expected 200 text/event-stream"
                    )
                for line in r.iter_lines():
                    if not line.startswith("data: "):
                        continue  # the blank line that ends each event
                    data = line.removeprefix("data: ")
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    events += 1
                    if "error" in event:
                        raise EdgefleetError(f"{device_id}: {event['error'].get('message')}")
                    usage = event.get("usage") or usage
                    for choice in event.get("choices", ()):
                        if choice.get("text"):
                            first = first or time.perf_counter()
                            token_events += 1
                            text.append(choice["text"])
                            on_text(choice["text"])
    except httpx.HTTPError as e:
        raise EdgefleetError(f"streaming from {device_id} at {address} failed: {e}") from e
    end = time.perf_counter()
    return StreamedAnswer(
        device_id,
        "".join(text),
        token_events,
        events,
        usage,
        round(((first or end) - t0) * 1e3, 2),
        round(end - t0, 3),
    )


def run_generative(demo: Demo, name: str, version: str) -> dict:
    """The tiny LM to every board in gated waves, then one board's streamed answer; the
    figures go into ``demo.summary["generative"]``."""
    o = demo.opts
    ref = f"{name}@{version}"
    gen = demo.summary.setdefault("generative", {})
    since = time.time()
    t0 = time.perf_counter()
    ro, waves = roll_out_generative(demo, name, version, since)
    gen["rollout_s"] = round(time.perf_counter() - t0, 1)
    board = demo.devices.agents[0]  # the smallest board of the demo: a Raspberry Pi 4
    served = board.active.model.info
    demo.ui.step(f"asking {board.device_id} over its local endpoint (SSE)")
    with demo.ui.paused():
        demo.ui.stream(f"\n{board.device_id} ({served.backend}, {served.artifact.name}) "
                       f"POST /v1/completions, stream: true\n  {o.prompt}")  # fmt: skip
        answer = stream_answer(
            board.endpoint.address, board.device_id, o.prompt, o.answer_tokens,
            demo.ui.stream,
        )  # fmt: skip
        demo.ui.stream("\n")
    u = answer.usage
    demo.ui.done(
        f"usage: prompt_tokens {u.get('prompt_tokens')}, completion_tokens "
        f"{u.get('completion_tokens')}, ttft {u.get('ttft_ms')} ms, decode "
        f"{u.get('decode_tokens_per_s') or 0:.0f} tok/s; {answer.events} SSE events "
        f"({answer.token_events} with text) in {answer.seconds * 1e3:.0f} ms"
    )
    demo.ui.step("waiting for the boards' generation telemetry at the fleet")
    figures = wait_for(
        lambda: (f := generation_figures(demo.client, ref, [None], since))[1] and f,
        30,
        "decode tokens/s in the fleet's telemetry",
    )
    fleet_devices = {d["id"]: d for d in demo.client.devices()}
    local = local_models(demo.devices)
    totals = demo.apps.totals()
    gen.update(
        model=ref,
        rollout_state=ro["status"],
        rollout_id=ro["id"],
        waves=[w["size"] for w in ro["waves"]],
        devices_active=sum(
            1 for i in demo.devices.ids if fleet_devices.get(i, {}).get("active_model") == ref
        ),
        devices_active_local=sum(1 for r in local.values() if r == ref),
        wave_gates=[asdict(w) for w in waves],
        gates=dict(ro["gates"]),
        fleet_requests=figures[0],
        fleet_decode_tps=round(figures[1], 1),
        fleet_ttft_p95_ms=round(figures[2], 3) if figures[2] is not None else None,
        app_answers=totals.answers,
        app_tokens=totals.tokens,
        answer={"prompt": o.prompt, **asdict(answer)},
        backends=backends(demo.devices.agents),
    )
    demo.ui.done(
        f"fleet telemetry for {ref}: {figures[0]} requests, decode "
        f"{figures[1]:.0f} tok/s, TTFT p95 {figures[2] or 0:.1f} ms; the board apps had "
        f"{totals.answers} answers, {totals.tokens} tokens"
    )
    return gen
