#!/usr/bin/env python3
"""Writes the feedback benchmark's request bodies: OUTDIR/feedback.json and OUTDIR/signals.json,
each a JSON array of N items (default 100) shaped like real traffic: trace-linked thumbs and
scores with a short comment, and the implicit signals a chat UI sends. No ids: the collector
generates one per item, so every item is a distinct message on the topic.

usage: make_batches.py OUTDIR [N]
"""
import json
import os
import random
import sys

out = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
rng = random.Random(42)


def hex_id(length):
    return "".join(rng.choice("0123456789abcdef") for _ in range(length))


feedback = []
for i in range(n):
    item = {
        "trace_id": hex_id(32),
        "span_id": hex_id(16),
        "conversation_id": f"conv-{rng.randrange(10_000)}",
        "user_id": f"user-{rng.randrange(1_000)}",
        "source": "human",
    }
    if i % 2 == 0:
        item.update(name="thumbs", value=rng.random() < 0.8)
    else:
        item.update(name="helpfulness", value=rng.randrange(1, 6),
                    comment="The answer missed the second part of my question.")
    feedback.append(item)

kinds = ["copy", "regenerate", "stop", "edit", "retry", "abandon"]
signals = []
for i in range(n):
    kind = kinds[i % len(kinds)]
    item = {"trace_id": hex_id(32), "conversation_id": f"conv-{rng.randrange(10_000)}", "type": kind}
    if kind == "stop":
        item.update(tokens_received=rng.randrange(1, 800), ms_since_start=rng.random() * 5000)
    elif kind == "edit":
        item.update(edit_ratio=round(rng.random(), 3))
    elif kind == "regenerate":
        item.update(discarded_trace_id=hex_id(32), discarded_span_id=hex_id(16))
    signals.append(item)

os.makedirs(out, exist_ok=True)
for name, items in [("feedback", feedback), ("signals", signals)]:
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(items, f)
