#!/usr/bin/env python3
"""Event-to-queryable latency probe: posts one GenAI span with a fresh trace id to the collector
(OTLP/HTTP protobuf), then polls ClickHouse until its llm_calls row is visible; repeats and prints
p50/p99 of (row visible - POST sent) in milliseconds.

usage: e2e_latency.py --collector http://127.0.0.1:4318 --clickhouse http://127.0.0.1:8123 \
         --database flywheel [--probes 100] [--interval 0.2]
       e2e_latency.py --collector http://127.0.0.1:4318 --api http://127.0.0.1:8080 ...
         (any store, e.g. `flywheel up`'s DuckDB: polls the status API, where each probe is a
         call to its own model `probe-<trace id>`)
"""
import argparse, json, os, statistics, time, urllib.request

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def kv(k, v):
    a = AnyValue()
    if isinstance(v, int):
        a.int_value = v
    else:
        a.string_value = v
    return KeyValue(key=k, value=a)


def probe_body(trace_id: bytes, model: str = "gpt-4o-mini") -> bytes:
    r = ExportTraceServiceRequest()
    rs = r.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", "latency-probe"))
    s = rs.scope_spans.add().spans.add()
    s.trace_id = trace_id
    s.span_id = os.urandom(8)
    s.name = "chat gpt-4o-mini"
    now = time.time_ns()
    s.start_time_unix_nano = now - 1_000_000
    s.end_time_unix_nano = now
    s.attributes.extend([kv("gen_ai.operation.name", "chat"), kv("gen_ai.request.model", model),
                         kv("gen_ai.usage.input_tokens", 10), kv("gen_ai.usage.output_tokens", 5)])
    return r.SerializeToString()


def visible(clickhouse, database, trace_hex):
    q = f"SELECT count() FROM {database}.llm_calls WHERE trace_id = '{trace_hex}'"
    req = urllib.request.Request(clickhouse + "/", data=q.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read().strip() not in (b"0", b"")


def visible_api(api, model):
    with urllib.request.urlopen(api + "/v1/status/models?minutes=10&limit=100", timeout=5) as resp:
        return any(m.get("model") == model for m in json.load(resp).get("models", []))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--collector", required=True)
    ap.add_argument("--clickhouse")
    ap.add_argument("--api")
    ap.add_argument("--database", default="flywheel")
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.2)
    a = ap.parse_args()
    latencies = []
    for _ in range(a.probes):
        trace_id = os.urandom(16)
        model = "probe-" + trace_id.hex()[:12] if a.api else "gpt-4o-mini"
        body = probe_body(trace_id, model)
        req = urllib.request.Request(a.collector + "/v1/traces", data=body, method="POST",
                                     headers={"content-type": "application/x-protobuf"})
        t0 = time.monotonic()
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200, resp.status
        deadline = t0 + 30
        seen = (lambda: visible_api(a.api, model)) if a.api else \
            (lambda: visible(a.clickhouse, a.database, trace_id.hex()))
        while not seen():
            if time.monotonic() > deadline:
                raise SystemExit(f"probe {trace_id.hex()} not visible after 30 s")
            time.sleep(0.01)
        latencies.append((time.monotonic() - t0) * 1000)
        time.sleep(a.interval)
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
    print(f"probes={len(latencies)} p50_ms={p(0.50):.0f} p99_ms={p(0.99):.0f} max_ms={latencies[-1]:.0f} "
          f"mean_ms={statistics.mean(latencies):.0f}")


if __name__ == "__main__":
    main()
