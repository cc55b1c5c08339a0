// Flywheel status page: polls /v1/status/* every few seconds and renders them. No build step,
// no framework; uPlot (vendored) draws the charts. Text from the data is only ever set through
// textContent.
"use strict";

(function () {
  const REFRESH_MS = 5000;
  const KEY = "flywheel.apiKey";
  const RANGE = "flywheel.statusMinutes";
  const THEME = "flywheel.theme";
  const $ = (id) => document.getElementById(id);

  const state = {
    key: localStorage.getItem(KEY) || "",
    minutes: Number(localStorage.getItem(RANGE)) || 60,
    paused: false,
    timer: null,
    lastOk: 0,
    charts: {},
    models: [],
    sort: { col: "cost_usd", desc: true },
    inflight: false,
    again: false,
  };

  // ---------- small helpers ----------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "style") el.setAttribute("style", v);
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const fin = (x) => typeof x === "number" && isFinite(x);
  function fmtInt(n) {
    if (!fin(n)) return "–";
    if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + "M";
    if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(n >= 1e5 ? 0 : 1) + "k";
    return Math.round(n).toLocaleString("en-US");
  }
  function fmtUsd(x) {
    if (!fin(x)) return "–";
    if (x === 0) return "$0";
    if (Math.abs(x) >= 100) return "$" + x.toFixed(0);
    if (Math.abs(x) >= 1) return "$" + x.toFixed(2);
    if (Math.abs(x) >= 0.01) return "$" + x.toFixed(3);
    return "$" + x.toPrecision(2);
  }
  function fmtMs(x) {
    if (!fin(x)) return "–";
    if (x === 0) return "0";
    if (x >= 10000) return (x / 1000).toFixed(0) + " s";
    if (x >= 1000) return (x / 1000).toFixed(2) + " s";
    if (x >= 100) return x.toFixed(0) + " ms";
    if (x >= 10) return x.toFixed(1) + " ms";
    return x.toFixed(2) + " ms";
  }
  function fmtPct(x, digits) {
    if (!fin(x)) return "–";
    const t = (x * 100).toFixed(digits === undefined ? 1 : digits);
    return (Number(t) === 0 ? t.replace("-", "") : t) + "%";
  }
  function ago(ms) {
    if (!fin(ms)) return "–";
    const s = Math.max(0, (Date.now() - ms) / 1000);
    if (s < 60) return Math.round(s) + "s ago";
    if (s < 3600) return Math.round(s / 60) + "m ago";
    if (s < 86400) return (s / 3600).toFixed(s < 36000 ? 1 : 0) + "h ago";
    return Math.round(s / 86400) + "d ago";
  }
  function dur(ms) {
    const s = Math.max(0, ms / 1000);
    if (s < 90) return Math.round(s) + "s";
    if (s < 5400) return Math.round(s / 60) + "m";
    return (s / 3600).toFixed(1) + "h";
  }
  const short = (id) => (id && id.length > 12 ? id.slice(0, 10) + "…" : id || "");
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  function rangeLabel(m) {
    return { 15: "15 min", 60: "1 h", 360: "6 h", 1440: "24 h", 10080: "7 d" }[m] || m + " min";
  }

  // ---------- API ----------
  class AuthNeeded extends Error {}
  async function api(path) {
    const headers = { Accept: "application/json" };
    if (state.key) headers.Authorization = "Bearer " + state.key;
    const r = await fetch(path, { headers, cache: "no-store" });
    let body = null;
    try { body = await r.json(); } catch (_) { /* not JSON */ }
    if (r.status === 401 || r.status === 403) {
      throw new AuthNeeded((body && body.message) || r.statusText);
    }
    if (!r.ok) throw new Error((body && body.message) || r.status + " " + r.statusText);
    return body;
  }

  function askKey(message) {
    const dlg = $("key-dialog");
    const err = $("key-error");
    err.hidden = !message;
    err.textContent = message || "";
    if (!dlg.open) dlg.showModal();
    $("key-input").focus();
  }
  $("key-form").addEventListener("submit", (e) => {
    const v = $("key-input").value.trim();
    if (!v) { e.preventDefault(); return; }
    state.key = v;
    localStorage.setItem(KEY, v);
    $("key-input").value = "";
    setTimeout(refreshNow, 0);
  });
  $("forget").addEventListener("click", () => {
    localStorage.removeItem(KEY);
    state.key = "";
    refreshNow();
  });

  // ---------- header controls ----------
  function markRange() {
    for (const b of $("range").querySelectorAll("button")) {
      b.classList.toggle("on", Number(b.dataset.minutes) === state.minutes);
    }
  }
  $("range").addEventListener("click", (e) => {
    const m = Number(e.target.dataset && e.target.dataset.minutes);
    if (!m) return;
    state.minutes = m;
    localStorage.setItem(RANGE, String(m));
    markRange();
    refreshNow();
  });
  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "resume" : "pause";
    if (!state.paused) refreshNow();
    stamp();
  });
  function applyTheme(t) {
    if (t) document.documentElement.dataset.theme = t;
    else delete document.documentElement.dataset.theme;
  }
  applyTheme(localStorage.getItem(THEME));
  $("theme").addEventListener("click", () => {
    const current = document.documentElement.dataset.theme ||
      (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
    const next = current === "dark" ? "light" : "dark";
    localStorage.setItem(THEME, next);
    applyTheme(next);
    rebuildCharts();
  });
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", rebuildCharts);

  function stamp() {
    const el = $("updated");
    el.classList.toggle("paused", state.paused);
    if (!state.lastOk) return;
    const stale = Date.now() - state.lastOk > 3 * REFRESH_MS;
    el.classList.toggle("stale", stale && !state.paused);
    el.textContent = (state.paused ? "paused · " : "updated ") + ago(state.lastOk);
  }
  setInterval(stamp, 1000);

  function banner(text) {
    const b = $("banner");
    b.hidden = !text;
    b.textContent = text || "";
  }

  // ---------- KPIs ----------
  function renderKpis(models, series, slos, alerts) {
    const kpis = $("kpis");
    const calls = models ? models.models.reduce((s, m) => s + m.calls, 0) : NaN;
    const errors = models ? models.models.reduce((s, m) => s + m.errors, 0) : NaN;
    const cost = models ? models.models.reduce((s, m) => s + m.cost_usd, 0) : NaN;
    const worst = models
      ? models.models.reduce((w, m) => (fin(m.ttft_ms.p95) && (!w || m.ttft_ms.p95 > w.ttft_ms.p95) ? m : w), null)
      : null;
    const sum = (a) => (a || []).reduce((s, x) => s + x, 0);
    const negative = series ? sum(series.negative_feedback) + sum(series.negative_signals) : NaN;
    const firingDetector = slos && slos.detector.status === "ok" ? slos.firing.length : null;
    const firingHistory = alerts ? alerts.alerts.filter((a) => a.state === "firing").length : null;
    const firing = firingDetector !== null ? firingDetector : firingHistory;
    const errRatio = calls > 0 ? errors / calls : NaN;
    const within = "last " + rangeLabel(state.minutes);
    const tiles = [
      ["Calls", fmtInt(calls), within, ""],
      ["Error ratio", fmtPct(errRatio, 2), fmtInt(errors) + " errors", errRatio > 0.05 ? "bad" : errRatio > 0.01 ? "warn" : "good"],
      ["Cost", fmtUsd(cost), calls > 0 ? fmtUsd(cost / calls) + " / call" : within, ""],
      ["Worst p95 TTFT", worst ? fmtMs(worst.ttft_ms.p95) : "–", worst ? worst.model : "no streamed calls", ""],
      ["Negative feedback", fmtInt(negative), "explicit and implicit", ""],
      ["Alerts firing", firing === null ? "–" : String(firing), firingDetector !== null ? "from the detector" : "from alert history", firing > 0 ? "bad" : firing === 0 ? "good" : ""],
    ];
    kpis.replaceChildren(...tiles.map(([label, value, hint, cls]) =>
      h("div", { class: "kpi " + cls, "data-kpi": label },
        h("div", { class: "label" }, label),
        h("div", { class: "value" }, value),
        h("div", { class: "hint" }, hint))));
  }

  // ---------- SLOs ----------
  function renderSlos(data) {
    const root = $("slos");
    const badge = $("detector-badge");
    const d = data.detector;
    if (d.status !== "ok") {
      badge.className = "badge down";
      badge.textContent = d.status === "not_configured" ? "no detector configured" : "detector not running";
      root.replaceChildren(h("p", { class: "empty", id: "detector-down" },
        d.status === "not_configured"
          ? "No detector is configured (api.detector_url is empty): SLOs and live alerts are not available."
          : "The detector is not running or not reachable (" + (d.message || d.url || "") + "). SLOs and live alerts appear when it is."));
      return;
    }
    badge.className = "badge";
    badge.textContent = data.evaluated_at ? "evaluated " + ago(Date.parse(data.evaluated_at)) : "";
    if (!data.slos.length) {
      root.replaceChildren(h("p", { class: "empty" }, "No SLO has seen events of this project yet."));
      return;
    }
    const rows = [...data.slos].sort((a, b) => (a.budget_remaining - b.budget_remaining) || a.slo.localeCompare(b.slo));
    // Service and operation shared by every row go to the title; the key column keeps the rest.
    const same = (f) => rows.every((v) => v[f] === rows[0][f]);
    const shared = ["service", "operation"].filter(same);
    badge.textContent = (shared.length ? shared.map((f) => rows[0][f]).filter(Boolean).join(" · ") + " · " : "") + badge.textContent;
    const keyOf = (v) => ["model", "operation", "service"].filter((f) => !shared.includes(f))
      .map((f) => v[f]).filter((x) => x && x !== "*").join(" · ") || "all";
    const table = h("table", { class: "slos" },
      h("thead", {}, h("tr", {},
        h("th", {}, "SLO"), h("th", {}, "key"), h("th", { class: "n" }, "SLI"),
        h("th", { class: "n" }, "objective"), h("th", {}, "burn rate (long · short / threshold)"),
        h("th", {}, "error budget"))),
      h("tbody", {}, rows.map((v) => {
        const breaching = v.rules.some((r) => r.breaching);
        const budget = v.budget_remaining;
        const bcls = budget <= 0 ? "bad spent" : budget < 0.1 ? "bad" : budget < 0.5 ? "warn" : "";
        const width = Math.max(0, Math.min(1, budget)) * 100;
        return h("tr", { "data-slo": v.slo, class: breaching ? "breaching" : "" },
          h("td", {}, breaching ? h("span", { class: "pill firing", title: "a rule is breaching" }, "burning") : null, " ", v.slo),
          h("td", { class: "mono" }, keyOf(v)),
          h("td", { class: "n", title: fmtInt(v.bad_events) + " bad of " + fmtInt(v.events) + " events over " + v.window },
            fin(v.sli) ? fmtPct(v.sli, 2) : "–"),
          h("td", { class: "n" }, fmtPct(v.objective, v.objective >= 0.999 ? 2 : 1), h("span", { class: "sub" }, " / " + v.window)),
          h("td", {}, v.rules.map((r) => {
            const cls = (x) => (fin(x) && x >= r.burn_rate_threshold ? "v hot" : fin(x) && x >= 1 ? "v warm" : "v");
            const f = (x) => (fin(x) ? x.toFixed(x >= 10 ? 0 : 1) + "×" : "–");
            return h("span", { class: "burn", title: r.severity + ": burn over " + r.long_window + " and " + r.short_window + " >= " + r.burn_rate_threshold + "×" },
              h("span", { class: "w" }, r.long_window), h("span", { class: cls(r.long_burn_rate) }, f(r.long_burn_rate)),
              h("span", { class: "w" }, r.short_window), h("span", { class: cls(r.short_burn_rate) }, f(r.short_burn_rate)),
              h("span", { class: "w" }, "/" + r.burn_rate_threshold + "×"));
          })),
          h("td", {}, h("div", { class: "budget" },
            h("div", { class: "bar " + bcls }, h("i", { style: "width:" + width.toFixed(1) + "%" })),
            h("span", { class: "pct" }, fmtPct(budget, 0)))));
      })));
    root.replaceChildren(h("div", { class: "wrap" }, table));
  }

  // ---------- alerts ----------
  function renderAlerts(slos, history) {
    const root = $("alerts");
    const live = slos && slos.detector.status === "ok" ? slos.firing : [];
    const episodes = history ? history.alerts : [];
    $("alerts-sub").textContent = "active and last " + rangeLabel(Math.max(state.minutes, 1440));
    const firingFps = new Set(live.map((a) => a.fingerprint));
    const rows = [];
    for (const a of live) {
      const inHistory = episodes.find((e) => e.fingerprint === a.fingerprint && e.state === "firing");
      rows.push({
        state: "firing", slo: a.labels.slo || a.labels.alertname, severity: a.labels.severity,
        model: a.labels.model, start: Date.parse(a.startsAt), end: null,
        burn: inHistory ? inHistory.peak_short_burn_rate : null,
        summary: (a.annotations && (a.annotations.summary || a.annotations.description)) || "",
      });
    }
    for (const e of episodes) {
      if (e.state === "firing" && firingFps.has(e.fingerprint)) continue;
      rows.push({
        state: e.state, slo: e.slo || e.alertname, severity: e.severity, model: e.labels.model,
        start: e.starts_at_ms, end: e.ends_at_ms, burn: e.peak_short_burn_rate, summary: e.summary,
      });
    }
    if (!rows.length) {
      const down = slos && slos.detector.status !== "ok";
      root.replaceChildren(h("p", { class: "empty" }, "No alert in this period." +
        (down ? " The detector is not running: live alerts are unavailable." : "")));
      return;
    }
    const table = h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "state"), h("th", {}, "SLO"), h("th", {}, "model"),
        h("th", {}, "severity"), h("th", {}, "started"), h("th", { class: "n" }, "lasted"), h("th", { class: "n" }, "peak burn"))),
      h("tbody", {}, rows.slice(0, 30).map((r) =>
        h("tr", { "data-alert": r.slo, title: r.summary },
          h("td", {}, h("span", { class: "pill " + r.state }, r.state)),
          h("td", {}, r.slo),
          h("td", { class: "mono" }, r.model || "–"),
          h("td", {}, h("span", { class: "pill " + (r.severity === "page" ? "bad" : "warn") }, r.severity || "–")),
          h("td", {}, ago(r.start)),
          h("td", { class: "n" }, dur((r.end || Date.now()) - r.start)),
          h("td", { class: "n" }, fin(r.burn) ? r.burn.toFixed(1) + "×" : "–")))));
    root.replaceChildren(h("div", { class: "wrap" }, table));
  }

  // ---------- models ----------
  const MODEL_COLS = [
    ["model", "model", (m) => m.model, false],
    ["calls", "calls", (m) => fmtInt(m.calls), true],
    ["error_ratio", "errors", (m) => fmtPct(m.error_ratio, 2), true],
    ["cost_usd", "cost", null, true],
    ["cost_per_call", "$/call", (m) => fmtUsd(m.calls ? m.cost_usd / m.calls : NaN), true],
    ["ttft_p50", "p50", (m) => fmtMs(m.ttft_ms.p50), true],
    ["ttft_p95", "p95", (m) => fmtMs(m.ttft_ms.p95), true],
    ["ttft_p99", "p99", (m) => fmtMs(m.ttft_ms.p99), true],
    ["tpot_p50", "p50", (m) => fmtMs(m.tpot_ms.p50), true],
    ["tpot_p95", "p95", (m) => fmtMs(m.tpot_ms.p95), true],
    ["tpot_p99", "p99", (m) => fmtMs(m.tpot_ms.p99), true],
    ["dur_p95", "p95", (m) => fmtMs(m.duration_ms.p95), true],
  ];
  function sortValue(m, col) {
    const q = { ttft: m.ttft_ms, tpot: m.tpot_ms, dur: m.duration_ms };
    const [k, p] = col.split("_");
    if (q[k] && p) return q[k][p];
    if (col === "cost_per_call") return m.calls ? m.cost_usd / m.calls : null;
    return m[col];
  }
  function renderModels() {
    const root = $("models");
    const models = [...state.models];
    if (!models.length) {
      root.replaceChildren(h("p", { class: "empty" }, "No model call in the last " + rangeLabel(state.minutes) + "."));
      return;
    }
    const { col, desc } = state.sort;
    models.sort((a, b) => {
      const x = sortValue(a, col), y = sortValue(b, col);
      if (typeof x === "string") return desc ? y.localeCompare(x) : x.localeCompare(y);
      const nx = fin(x) ? x : -Infinity, ny = fin(y) ? y : -Infinity;
      return desc ? ny - nx : nx - ny;
    });
    const maxCost = Math.max(...models.map((m) => m.cost_usd), 1e-12);
    const head2 = h("tr", {}, MODEL_COLS.map(([key, label, , num]) =>
      h("th", { class: (num ? "n " : "") + "sortable" + (key === col ? " sorted" : ""), "data-col": key,
        onclick: () => { state.sort = { col: key, desc: key === col ? !desc : key !== "model" }; renderModels(); } }, label)));
    const head1 = h("tr", {}, h("th", { colspan: 5 }), h("th", { class: "group", colspan: 3 }, "TTFT"),
      h("th", { class: "group", colspan: 3 }, "TPOT"), h("th", { class: "group" }, "duration"));
    const table = h("table", { class: "models" }, h("thead", {}, head1, head2),
      h("tbody", {}, models.map((m) => h("tr", { "data-model": m.model },
        MODEL_COLS.map(([key, , f, num]) => {
          if (key === "cost_usd") {
            return h("td", { class: "n", "data-cost": String(m.cost_usd) }, fmtUsd(m.cost_usd),
              h("span", { class: "share", style: "width:" + Math.round(40 * m.cost_usd / maxCost) + "px" }));
          }
          const cls = (num ? "n" : "mono") + (key === "error_ratio" && m.error_ratio > 0.05 ? " bad" : "");
          return h("td", { class: cls }, f(m));
        })))));
    root.replaceChildren(h("div", { class: "wrap" }, table));
  }

  // ---------- feedback ----------
  const NAMES = {
    "feedback:thumbs": "▼ thumbs down", "signal:regenerate": "↻ regenerate", "signal:stop": "■ stop",
    "signal:edit": "✎ edit", "signal:abandon": "⤫ abandon", "signal:retry": "↻ retry", "signal:rephrase": "✎ rephrase",
  };
  function renderFeedback(data) {
    const root = $("feedback");
    const counts = Object.entries(data.counts || {}).sort((a, b) => b[1] - a[1])
      .map(([k, n]) => n + " " + k.split(":")[1]).join(" · ");
    $("feedback-sub").textContent = counts ? "latest " + data.items.length + ": " + counts : "";
    if (!data.items.length) {
      root.replaceChildren(h("p", { class: "empty" }, "No negative feedback or signal in the last " + rangeLabel(state.minutes) + "."));
      return;
    }
    root.replaceChildren(h("ul", { class: "items" }, data.items.slice(0, 24).map((i) => {
      const key = i.kind + ":" + i.name;
      const label = key === "feedback:thumbs" ? NAMES[key] : NAMES[key] || i.name;
      const pillCls = i.kind === "feedback" ? "bad" : "warn";
      const text = [];
      if (i.comment) text.push(h("b", {}, "“" + i.comment + "” "));
      if (i.prompt) text.push("Q: " + i.prompt);
      if (i.answer) text.push(" → A: " + i.answer);
      return h("li", { "data-kind": i.kind, "data-name": i.name },
        h("span", { class: "when", title: new Date(i.time_ms).toISOString() }, ago(i.time_ms)),
        h("span", { class: "what" },
          h("span", { class: "pill " + pillCls }, label),
          i.detail && i.detail !== "false" ? h("span", { class: "sub" }, i.detail) : null,
          i.model ? h("span", { class: "model mono" }, i.model) : null,
          i.conversation_id ? h("span", { class: "conv", title: "conversation " + i.conversation_id }, "conv " + short(i.conversation_id)) : null),
        text.length ? h("span", { class: "text", title: (i.prompt || "") + "\n→ " + (i.answer || "") }, text) : null);
    })));
  }

  // ---------- charts ----------
  const CHARTS = {
    "chart-calls": (s) => [["calls", "--c1", s.calls.map((n) => n * 60000 / s.step_ms)], ["errors", "--c4", s.errors.map((n) => n * 60000 / s.step_ms)]],
    "chart-ttft": (s) => [["p95 TTFT", "--c3", s.ttft_p95_ms]],
    "chart-cost": (s) => [["cost", "--c2", s.cost_usd.map((x) => x * 60000 / s.step_ms)]],
    "chart-negative": (s) => [["feedback", "--c4", s.negative_feedback.map((n) => n * 60000 / s.step_ms)], ["signals", "--c3", s.negative_signals.map((n) => n * 60000 / s.step_ms)]],
  };
  const AXIS_FMT = {
    "chart-calls": (v) => fmtInt(v),
    "chart-ttft": (v) => fmtMs(v),
    "chart-cost": (v) => fmtUsd(v),
    "chart-negative": (v) => fmtInt(v),
  };
  function chartOpts(id, series, width) {
    const grid = { stroke: css("--line"), width: 1 };
    const axis = { stroke: css("--muted"), grid, ticks: { stroke: css("--line"), width: 1, size: 4 }, font: "11px system-ui, sans-serif" };
    return {
      width, height: 150, legend: { show: false }, cursor: { drag: { x: false, y: false }, points: { size: 5 } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] } },
      axes: [Object.assign({}, axis, { values: (u, vals) => vals.map((v) => fmtTime(v, u)) }),
        Object.assign({}, axis, { size: 52, values: (u, vals) => vals.map(AXIS_FMT[id]) })],
      series: [{}].concat(series.map(([label, color]) => ({
        label, stroke: css(color), width: 1.6, spanGaps: false, points: { show: false },
        fill: series.length === 1 ? css(color) + "22" : undefined,
      }))),
    };
  }
  // 24-hour clock; the date too when the range spans more than a day.
  function fmtTime(sec, u) {
    const d = new Date(sec * 1000);
    const p = (n) => String(n).padStart(2, "0");
    const hm = p(d.getHours()) + ":" + p(d.getMinutes());
    const span = u.scales.x.max - u.scales.x.min;
    return span > 86400 ? p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + hm : hm;
  }
  let lastSeries = null;
  function renderCharts(full) {
    lastSeries = full;
    // The bucket in progress would read as a drop: charts end at the last whole bucket.
    const keep = Math.max(1, full.t.length - 1);
    const s = Object.fromEntries(Object.entries(full).map(([k, v]) => [k, Array.isArray(v) ? v.slice(0, keep) : v]));
    const xs = s.t.map((t) => t / 1000);
    for (const [id, make] of Object.entries(CHARTS)) {
      const series = make(s);
      const data = [xs].concat(series.map((x) => x[2]));
      const el = $(id).querySelector(".plot");
      const width = Math.max(200, el.clientWidth);
      const c = state.charts[id];
      if (c && c.series.length === data.length) {
        c.setData(data);
        if (Math.abs(c.width - width) > 2) c.setSize({ width, height: 150 });
      } else {
        if (c) c.destroy();
        el.replaceChildren();
        state.charts[id] = new uPlot(chartOpts(id, series, width), data, el);
      }
      $(id).dataset.points = String(data[1].filter((v) => fin(v) && v > 0).length);
    }
  }
  function rebuildCharts() {
    for (const c of Object.values(state.charts)) c.destroy();
    state.charts = {};
    if (lastSeries) renderCharts(lastSeries);
  }
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => lastSeries && renderCharts(lastSeries), 150);
  });

  // ---------- refresh loop ----------
  async function refresh() {
    // One request set at a time; a change (range, key) meanwhile runs again right after it.
    if (state.inflight) { state.again = true; return; }
    state.inflight = true;
    state.again = false;
    const m = state.minutes;
    const calls = [
      api("/v1/status/models?minutes=" + m),
      api("/v1/status/timeseries?minutes=" + m),
      api("/v1/status/slos"),
      api("/v1/status/alerts?minutes=" + Math.max(m, 1440)),
      api("/v1/status/feedback?minutes=" + m + "&limit=50"),
    ];
    const [models, series, slos, alerts, feedback] = await Promise.allSettled(calls);
    state.inflight = false;
    if (state.again || m !== state.minutes) return refresh();
    const all = [models, series, slos, alerts, feedback];
    const auth = all.find((r) => r.status === "rejected" && r.reason instanceof AuthNeeded);
    if (auth) {
      askKey(state.key ? auth.reason.message : "");
      return;
    }
    $("forget").hidden = !state.key;
    const v = (r) => (r.status === "fulfilled" ? r.value : null);
    const first = all.map(v).find((x) => x && x.project);
    if (first) $("project").textContent = first.project;
    if (v(models)) { state.models = v(models).models; renderModels(); }
    if (v(series)) renderCharts(v(series));
    if (v(slos)) renderSlos(v(slos));
    if (v(alerts) || v(slos)) renderAlerts(v(slos), v(alerts));
    if (v(feedback)) renderFeedback(v(feedback));
    renderKpis(v(models), v(series), v(slos), v(alerts));
    const failed = all.filter((r) => r.status === "rejected").map((r) => r.reason.message);
    banner(failed.length ? "Some panels could not refresh: " + [...new Set(failed)].join("; ") : "");
    if (!failed.length) state.lastOk = Date.now();
    document.body.dataset.loaded = "true";
    stamp();
  }
  function schedule() {
    clearTimeout(state.timer);
    state.timer = setTimeout(async () => {
      if (!state.paused && !document.hidden) await refresh();
      schedule();
    }, REFRESH_MS);
  }
  async function refreshNow() {
    clearTimeout(state.timer);
    await refresh();
    schedule();
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden && !state.paused) refreshNow(); });

  markRange();
  refreshNow();
})();
