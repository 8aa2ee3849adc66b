"""Framing codecs: how fast streams are cut into frames (the engine does it on every streamed
miss, in network-sized chunks) and how fast frames are decoded and re-encoded.

    .venv/bin/python benchmarks/bench_framing.py             # 2,000-frame streams, 5 rounds
    .venv/bin/python benchmarks/bench_framing.py --frames 20000 --chunk 1024

For each framing (SSE, NDJSON, AWS event-stream) it builds a realistic stream of text deltas,
then times: split (the stream fed in ``--chunk``-byte chunks), decode (every raw frame read as a
frame object) and encode (the frames written back). Figures are MB/s and µs per frame; the
SSE splitter is the baseline the other two are compared with.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import orjson

from llm_cache.providers.base import SSE
from llm_cache.providers.eventstream import EVENTSTREAM, EventStreamMessage
from llm_cache.providers.ndjson import NDJSON, NDJSONRecord
from llm_cache.providers.sse import SSEEvent


def streams(frames: int) -> dict[str, tuple[Any, bytes]]:
    words = [f"word{i % 97} " for i in range(frames)]
    sse = b"".join(
        SSEEvent.from_json(
            {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": w}}}},
            event="content-delta",
        ).encode()
        for w in words
    )
    ndjson = b"".join(
        NDJSONRecord.from_json(
            {
                "model": "llama3.2",
                "created_at": "2026-01-01T00:00:00.000000000Z",
                "message": {"role": "assistant", "content": w},
                "done": False,
            }
        ).encode()
        for w in words
    )
    es = b"".join(
        EventStreamMessage.for_event(
            "contentBlockDelta",
            orjson.dumps({"contentBlockIndex": 0, "delta": {"text": w}, "p": "abcdefgh"}),
        ).encode()
        for w in words
    )
    return {"sse": (SSE, sse), "ndjson": (NDJSON, ndjson), "eventstream": (EVENTSTREAM, es)}


def best(rounds: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000, help="frames per stream")
    parser.add_argument("--chunk", type=int, default=4096, help="bytes per network chunk")
    parser.add_argument("--rounds", type=int, default=5, help="best of N")
    args = parser.parse_args()
    print(f"{args.frames} frames, {args.chunk}-byte chunks, best of {args.rounds}")
    print(f"{'framing':<12} {'MB':>6} {'split MB/s':>11} {'decode us/f':>12} {'encode us/f':>12}")
    baseline = None
    for name, (framing, wire) in streams(args.frames).items():
        chunks = [wire[i : i + args.chunk] for i in range(0, len(wire), args.chunk)]

        def split(framing: Any = framing, chunks: list[bytes] = chunks) -> list[bytes]:
            splitter = framing.splitter()
            out = [f for c in chunks for f in splitter.feed(c)]
            return out + splitter.finish()

        raw = split()
        assert b"".join(raw) == wire, name  # exact: the frames are the stream
        decoded = [framing.decode(r) for r in raw]
        t_split = best(args.rounds, split)
        t_decode = best(args.rounds, lambda f=framing, r=raw: [f.decode(x) for x in r])
        t_encode = best(args.rounds, lambda f=framing, d=decoded: f.encode(d))
        mb = len(wire) / 1e6
        rate = mb / t_split
        baseline = baseline or rate
        print(
            f"{name:<12} {mb:>6.2f} {rate:>11.1f} {t_decode / len(raw) * 1e6:>12.2f} "
            f"{t_encode / len(raw) * 1e6:>12.2f}   split {rate / baseline:.2f}x SSE"
        )


if __name__ == "__main__":
    main()
