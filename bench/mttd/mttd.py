#!/usr/bin/env python3
"""MTTD benchmark helper (bench/mttd.sh): a webhook receiver that timestamps every alert in wall
time, and the report (detection time per incident beside the policy's theoretical minimum, and
false alerts over clean traffic).

  mttd.py hook PORT OUT.jsonl          # records {"wall_ns", "status", "labels"} per alert
  mttd.py report realtime TRUTH HOOK SLOS.yaml ORACLE.jsonl
  mttd.py report clean TRUTH HOOK

The theoretical minimum is burn.rs's `min_detection_time` (`rule_detection_time`): for a step
from baseline ratio b to incident ratio p, a rule with factor F over windows (long, short)
fires at `max(long, short) * (F (1 - o) - b) / (p - b)`; the policy's minimum is the earliest
rule. p and b are the nominal ratios of the loadgen scenario (reference.toml distributions).
"""
import http.server, json, math, sys, time, tomllib

# ---------- hook
def hook(port, out):
    f = open(out, "a", buffering=1)

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            wall = time.time_ns()
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
            try:
                msg = json.loads(body)
            except ValueError:
                return
            for a in msg.get("alerts", []):
                f.write(json.dumps({"wall_ns": wall, "status": a.get("status", msg.get("status")),
                                    "labels": a.get("labels", {}), "startsAt": a.get("startsAt")}) + "\n")

        def log_message(self, *a):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), H).serve_forever()

# ---------- nominal ratios of reference.toml
def ln_sf(mean, sigma, x):
    """P(X > x) for a log-normal with the given mean (loadgen's parametrisation)."""
    mu = math.log(mean) - sigma * sigma / 2
    return 0.5 * math.erfc((math.log(x) - mu) / (sigma * math.sqrt(2)))

MODELS = {  # name: provider, weight, ttft mean ms, tpot mean ms (sigma 0.35 / 0.25)
    "gpt-4o": ("openai", 0.30, 450, 12), "gpt-4o-mini": ("openai", 0.35, 350, 8),
    "claude-sonnet-4": ("anthropic", 0.20, 900, 15), "gemini-2.5-flash": ("gcp.gemini", 0.15, 550, 5)}
PERR = {"openai": 0.01, "anthropic": 0.015, "gcp.gemini": 0.01}

def goodput_bad(m, mult=1.0, extra_err=0.0, ttft_s=2.0, tpot_ms=50.0):
    prov, _, ttft, tpot = MODELS[m]
    err = 1 - (1 - PERR[prov]) * (1 - extra_err)
    slow = 1 - (1 - ln_sf(ttft * mult, 0.35, ttft_s * 1000)) * (1 - ln_sf(tpot * mult, 0.25, tpot_ms))
    return err + (1 - err) * slow

def step(inc):
    """(slo, label filter, baseline ratio, incident ratio) of an incident; None: no SLO."""
    k = inc["kind"]; p = inc.get("params", inc)
    if k == "ttft_regression":
        m = p["model"]; t = MODELS[m][2]  # mttd.sh: TTFT over 2 s is bad
        return "ttft", {"model": m}, ln_sf(t, 0.35, 2000), ln_sf(t * p["multiplier"], 0.35, 2000)
    if k == "error_burst":
        m = next(n for n, v in MODELS.items() if v[0] == p["provider"])
        b = PERR[p["provider"]]
        return "availability", {"model": m}, b, 1 - (1 - b) * (1 - p["error_ratio"])
    if k == "thumbs_down_surge":
        return "thumbs-down", {"model": p["model"]} if p.get("model") else {}, 0.1, p["ratio"]
    if k == "regenerate_surge":
        return "regenerate", {}, 0.04, p["ratio"]
    if k == "overload":  # the worst-hit model
        m = "claude-sonnet-4"
        return "goodput", {}, goodput_bad(m), goodput_bad(m, p["multiplier"], p["error_ratio"])
    return None

def parse_dur(s):
    s = str(s); units = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    for u in ("ms", "s", "m", "h", "d", "w"):
        if s.endswith(u) and s[: -len(u)].replace(".", "").isdigit():
            return float(s[: -len(u)]) * units[u]
    return float(s)

def load_slos(path):
    """Just enough of the SLO file written by mttd.sh (flow style, one rule per line)."""
    slos, cur = {}, None
    for line in open(path):
        t = line.strip()
        if t.startswith("- name:"):
            cur = t.split(":", 1)[1].strip(); slos[cur] = {"rules": []}
        elif t.startswith("objective:") and cur:
            slos[cur]["objective"] = float(t.split(":", 1)[1])
        elif t.startswith("- { long:") and cur:
            kv = dict(x.strip().split(": ") for x in t.strip("-{} ").split(","))
            slos[cur]["rules"].append((parse_dur(kv["long"]), parse_dur(kv["short"]), float(kv["burn_rate"])))
    return slos

def theoretical_min(slo, b, p):
    budget = 1 - slo["objective"]; best = None
    for long, short, f in slo["rules"]:
        thr = f * budget
        if p <= thr:
            continue
        t = max(0.0, (thr - b) / (p - b)) * max(long, short)
        best = t if best is None else min(best, t)
    return best

def read_jsonl(path):
    out = []
    for line in open(path):
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out

def matches(a, slo, flt):
    return a["status"] == "firing" and a["labels"].get("slo") == slo and all(
        a["labels"].get(k) == v for k, v in flt.items())

def cost_min(inc, lateness):
    """The cost change policy's own minimum (mttd.sh: 5 s intervals, k = 1.5, h = 8): the CUSUM
    needs 4 intervals with z >= 4 (3 x 2.5 = 7.5 is not over 8), the first being the one the
    incident starts in, and each interval is judged once closed (its end + the lateness)."""
    start_s = (inc.get("start_ns") or inc.get("start_unix_ns")) / 1e9
    return (math.floor(start_s / 5) + 4) * 5 - start_s + lateness

def report_realtime(truth, hookf, slosf, oraclef):
    tr = read_jsonl(truth); alerts = read_jsonl(hookf); slos = load_slos(slosf)
    oracle = read_jsonl(oraclef)
    incs = [x for x in tr if x.get("type") == "incident"]
    lateness = float(__import__("os").environ.get("MTTD_LATENESS_S", "10"))
    print("| incident | SLO (nominal bad ratio) | start (UTC) | first alert (UTC) | detection s | nominal min s | exact min s | overhead s |")
    print("|---|---|---|---|---|---|---|---|")
    overheads = []; missed = 0
    ts = lambda ns: time.strftime("%H:%M:%S", time.gmtime(ns / 1e9)) + f".{int(ns % 1e9 / 1e6):03d}"
    for i, inc in enumerate(incs):
        start_ns = inc.get("start_ns") or inc.get("start_unix_ns")
        nxt = incs[i + 1].get("start_ns") if i + 1 < len(incs) else None
        inside = lambda t: t >= start_ns and (nxt is None or t < nxt)
        name = inc.get("name", inc["kind"])
        p = inc.get("params", inc)
        if inc["kind"] == "cost_spike":
            flt = {"model": p["model"]} if p.get("model") else {}
            first = next((a for a in alerts if matches(a, "cost-per-call", flt) and inside(a["wall_ns"])), None)
            cm = cost_min(inc, lateness)
            if first is None:
                missed += 1
                print(f"| {name} | cost-per-call (change) | {ts(start_ns)} | - | - | {cm:.1f} (policy) | - | - |")
            else:
                det = (first["wall_ns"] - start_ns) / 1e9
                print(f"| {name} | cost-per-call (change) | {ts(start_ns)} | {ts(first['wall_ns'])} | {det:.1f} | {cm:.1f} (policy, incl. {lateness:.0f} s lateness) | - | {det - cm:.1f} (vs policy) |")
            continue
        s = step(inc)
        if s is None:
            continue
        slo, flt, b, p_ = s
        first = next((a for a in alerts if matches(a, slo, flt) and inside(a["wall_ns"])), None)
        tmin = theoretical_min(slos[slo], b, p_)
        tmin_s = "n/a" if tmin is None else f"{tmin:.1f}"
        ex = next((o for o in oracle if o["slo"] == slo and all(o.get(k) == v for k, v in flt.items())
                   and inside(o["breach_ns"])), None)
        ex_s = "never" if ex is None else f"{(ex['breach_ns'] - start_ns) / 1e9:.1f}"
        if first is None:
            missed += 1
            print(f"| {name} | {slo} ({b:.3f} -> {p_:.3f}) | {ts(start_ns)} | - | - | {tmin_s} | {ex_s} | - |")
            continue
        det = (first["wall_ns"] - start_ns) / 1e9
        ov = None if ex is None else (first["wall_ns"] - ex["breach_ns"]) / 1e9
        if ov is not None:
            overheads.append(ov)
        print(f"| {name} | {slo} ({b:.3f} -> {p_:.3f}) | {ts(start_ns)} | {ts(first['wall_ns'])} | {det:.1f} | {tmin_s} | {ex_s} | {'n/a' if ov is None else f'{ov:.2f}'} |")
    if overheads:
        o = sorted(overheads)
        print(f"SLO incidents: {len(o)} detected, {missed} missed; overhead over the exact minimum: min={o[0]:.2f}s median={o[len(o)//2]:.2f}s max(p99)={o[-1]:.2f}s; target p99<=2s: {'met' if o[-1] <= 2 and not missed else 'missed'}")
    print("all firing notifications (wall, slo, model, severity):")
    for a in alerts:
        if a["status"] == "firing":
            l = a["labels"]
            print(f"  {ts(a['wall_ns'])} {l.get('slo')} {l.get('model')} {l.get('severity')}")
    print("exact breaches (oracle):")
    for o in oracle:
        print(f"  {ts(o['breach_ns'])} {o['slo']} {o['model']}")

def report_clean(truth, hookf):
    alerts = read_jsonl(hookf)
    fir = [a for a in alerts if a["status"] == "firing"]
    pages = [a for a in fir if a["labels"].get("severity") == "page"]
    run = next((x for x in read_jsonl(truth) if x.get("type") == "run"), {})
    summ = next((x for x in read_jsonl(truth) if x.get("type") == "summary"), {})
    print(f"clean run: {json.dumps(run)}")
    print(f"summary: {json.dumps(summ)}")
    print(f"false alerts: {len(fir)} firing notifications, {len(pages)} pages, {len(fir)-len(pages)} tickets")
    for a in fir:
        l = a["labels"]
        print(f"  {a.get('startsAt')} {l.get('slo')} {l.get('model')} {l.get('severity')}")

if __name__ == "__main__":
    if sys.argv[1] == "hook":
        hook(sys.argv[2], sys.argv[3])
    elif sys.argv[2] == "realtime":
        report_realtime(*sys.argv[3:7])
    else:
        report_clean(*sys.argv[3:5])
