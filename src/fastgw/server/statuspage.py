"""`GET /` on the admin listener: the status page.

One self-contained HTML document (no CDN, no external file: it works on an air-gapped host) that
refreshes itself from the admin JSON endpoints: `/healthz` (generation, last reload), `/stats`
(workers, per-route counters, rate-limit counters), `/routes` and `/upstreams` (targets with health
and ejection). Rates and latencies are computed in the page from the difference between two
reads of the counters (latencies: of the requests since the last read, or of all of them, greyed,
when none came since). `?refresh=MS` sets the interval (default 2000). With an admin token, the
page asks for it once and keeps it for the browser tab (sessionStorage).
"""

from __future__ import annotations

_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fastgw status</title>
<style>
  :root { --fg: #1d2330; --muted: #687083; --line: #e3e6ec; --ok: #1a7f37; --bad: #c62828; --warn: #b26a00;
          --bg: #f6f7f9; --card: #fff; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
         background: var(--bg); }
  header { display: flex; flex-wrap: wrap; gap: 18px; align-items: baseline; padding: 14px 22px;
           background: #141a26; color: #fff; }
  header h1 { font-size: 18px; margin: 0; }
  header .meta { color: #c5cad6; }
  main { padding: 16px 22px; display: grid; gap: 16px; }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
  h2 { font-size: 15px; margin: 0 0 8px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { color: var(--muted); font-weight: 600; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  .ok { color: var(--ok); font-weight: 600; }
  .bad { color: var(--bad); font-weight: 600; }
  .warn { color: var(--warn); font-weight: 600; }
  .muted { color: var(--muted); }
  #error { display: none; background: #fdecea; color: var(--bad); border: 1px solid #f5c2c0; border-radius: 8px;
           padding: 10px 14px; }
  #auth { display: none; }
  #auth input { font: inherit; padding: 4px 8px; width: 320px; }
</style>
</head>
<body>
<header>
  <h1>fastgw</h1>
  <span class="meta" id="summary">loading…</span>
  <span class="meta" id="updated"></span>
</header>
<main>
  <div id="error"></div>
  <section id="auth">
    <h2>Admin token</h2>
    <form id="auth-form"><input id="token" type="password" autocomplete="off" placeholder="bearer token">
    <button type="submit">Use</button></form>
  </section>
  <section>
    <h2>Workers</h2>
    <table id="workers"><thead><tr><th>pid</th><th>slot</th><th>generation</th><th>state</th>
      <th class="num">connections</th></tr></thead><tbody></tbody></table>
    <p class="muted" id="reloads"></p>
  </section>
  <section>
    <h2>Routes</h2>
    <table id="routes"><thead><tr><th>#</th><th>route</th><th>upstream</th><th>rate limits</th>
      <th class="num">req/s</th><th class="num">5xx/s</th><th class="num">mean latency</th>
      <th class="num">p99 (≤)</th><th class="num">upstream mean</th><th class="num">requests</th></tr></thead>
      <tbody></tbody></table>
  </section>
  <section>
    <h2>Upstream targets</h2>
    <table id="targets"><thead><tr><th>upstream</th><th>target</th><th>health</th><th>ejected</th>
      <th class="num">in flight</th><th class="num">latency (EWMA)</th><th class="num">completed</th>
      <th class="num">failed</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Rate limits</h2>
    <table id="ratelimits"><thead><tr><th>limit</th><th>rate</th><th>key</th><th>scope</th>
      <th class="num">allowed/s</th><th class="num">refused/s</th><th class="num">allowed</th>
      <th class="num">refused</th><th class="num">shadow refused</th></tr></thead><tbody></tbody></table>
  </section>
</main>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const REFRESH = Math.max(100, parseInt(params.get("refresh") || "2000", 10) || 2000);
let token = sessionStorage.getItem("fastgw-admin-token") || "";
let previous = null;

async function get(path) {
  const headers = token ? {"Authorization": "Bearer " + token} : {};
  const resp = await fetch(path, {headers, cache: "no-store"});
  if (resp.status === 401) { const e = new Error("unauthorized"); e.auth = true; throw e; }
  if (!resp.ok) throw new Error(path + " answered " + resp.status);
  return resp.json();
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells, attrs) {
  const tr = document.createElement("tr");
  for (const [k, v] of Object.entries(attrs || {})) tr.setAttribute(k, v);
  for (const c of cells) tr.appendChild(c);
  return tr;
}

function fill(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows);
}

function ms(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  return seconds < 0.001 ? (seconds * 1e6).toFixed(0) + " µs" : (seconds * 1000).toFixed(seconds < 0.1 ? 2 : 0) + " ms";
}

function rate(now, before, dt) {
  return before === undefined || dt <= 0 ? null : Math.max(0, now - before) / dt;
}

function fmtRate(r) { return r === null ? "–" : r.toFixed(r < 10 ? 2 : 0); }

function quantile(now, before, q) {
  // The upper bound of the bucket where the q-quantile of the requests since the last read falls.
  const count = now.count - (before ? before.count : 0);
  if (count <= 0) return null;
  for (let i = 0; i < now.buckets.length; i++) {
    const c = now.buckets[i][1] - (before ? before.buckets[i][1] : 0);
    if (c >= q * count) return now.buckets[i][0] === null ? Infinity : now.buckets[i][0];
  }
  return null;
}

function mean(now, before) {
  if (!now) return null;
  const count = now.count - (before ? before.count : 0);
  return count > 0 ? (now.sum - (before ? before.sum : 0)) / count : null;
}

function routeLabel(r) {
  const pattern = r.path !== null ? r.path : (r.prefix || "").replace(/\/+$/, "") + "/*";
  let text = (r.host || "") + pattern;
  if (r.methods && r.methods.length) text += " " + r.methods.join(",");
  return text;
}

function render(health, stats, routes, upstreams, limits) {
  const dt = previous ? stats.time - previous.stats.time : 0;
  const last = health.last_reload;
  document.getElementById("summary").textContent =
    `master ${health.pid} · generation ${health.generation} · ${health.status}` +
    (health.reloading ? " · reloading" : "");
  document.getElementById("updated").textContent = "updated " + new Date(stats.time * 1000).toLocaleTimeString();
  document.getElementById("reloads").textContent =
    `reloads: ${stats.reloads.ok || 0} ok, ${stats.reloads.failed || 0} failed; worker restarts: ${stats.restarts}` +
    (last ? ` · last reload ${last.result} (generation ${last.generation})` : "");
  fill("workers", stats.workers.map(w => row([
    el("td", w.pid), el("td", w.slot), el("td", w.generation),
    el("td", w.stopping ? "draining" : (w.ready ? "serving" : "starting"),
       w.stopping ? "warn" : (w.ready ? "ok" : "muted")),
    el("td", w.connections === null ? "–" : w.connections, "num"),
  ], {"data-pid": w.pid})));

  const labels = routes.routes.map(routeLabel);
  const counts = {};
  labels.forEach(l => { counts[l] = (counts[l] || 0) + 1; });
  fill("routes", routes.routes.map((r, i) => {
    const label = counts[labels[i]] > 1 ? `${labels[i]} #${i}` : labels[i];
    const now = stats.routes[label];
    const before = previous ? previous.stats.routes[label] : undefined;
    const req = now ? now.requests : 0;
    const r5 = now ? (now.classes["5xx"] || 0) : 0;
    // Latencies of the requests since the last read; with none since, of all of them (greyed).
    const live = now && before && now.duration.count > before.duration.count;
    const since = live ? before : undefined;
    const p99 = now ? quantile(now.duration, since && since.duration, 0.99) : null;
    const lat = live ? "num" : "num muted";
    return row([
      el("td", r.index), el("td", label), el("td", r.upstream || "(local)"),
      el("td", (r.rate_limit || []).join(", ") || "–"),
      el("td", fmtRate(rate(req, before ? before.requests : (previous ? 0 : undefined), dt)), "num"),
      el("td", fmtRate(rate(r5, before ? (before.classes["5xx"] || 0) : (previous ? 0 : undefined), dt)), "num"),
      el("td", now ? ms(mean(now.duration, since && since.duration)) : "–", lat),
      el("td", p99 === null ? "–" : (p99 === Infinity ? "> 10 s" : ms(p99)), lat),
      el("td", now ? ms(mean(now.upstream, since && since.upstream)) : "–", lat),
      el("td", req, "num"),
    ], {"data-route": label});
  }));

  const targets = [];
  for (const [name, up] of Object.entries(upstreams.upstreams)) {
    for (const t of up.targets) {
      const state = t.health ? t.health.state : "no checks";
      const cls = state === "unhealthy" ? "bad" : (state === "healthy" ? "ok" : "muted");
      const completed = (t.workers || []).reduce((a, w) => a + w.completed, 0);
      const failed = (t.workers || []).reduce((a, w) => a + w.failed, 0);
      targets.push(row([
        el("td", name), el("td", t.address), el("td", state, "health " + cls),
        el("td", t.ejected ? `by ${t.ejected_by} worker${t.ejected_by === 1 ? "" : "s"}` : "no",
           "ejected " + (t.ejected ? "bad" : "muted")),
        el("td", t.active === undefined ? "–" : t.active, "num"),
        el("td", t.ewma_ms === null || t.ewma_ms === undefined ? "–" : t.ewma_ms.toFixed(2) + " ms", "num"),
        el("td", completed, "num"), el("td", failed, "num"),
      ], {"data-target": name + "/" + t.address, "data-health": state}));
    }
  }
  fill("targets", targets);

  fill("ratelimits", Object.entries(limits.limits).map(([name, l]) => {
    const now = stats.ratelimits[name] || {};
    const before = previous ? (previous.stats.ratelimits[name] || {}) : undefined;
    return row([
      el("td", name), el("td", l.rate), el("td", l.key), el("td", l.scope + (l.enforce ? "" : " (shadow)")),
      el("td", fmtRate(rate(now.allowed || 0, before ? before.allowed || 0 : undefined, dt)), "num"),
      el("td", fmtRate(rate(now.refused || 0, before ? before.refused || 0 : undefined, dt)), "num"),
      el("td", now.allowed || 0, "num"), el("td", now.refused || 0, "num"), el("td", now.shadow_refused || 0, "num"),
    ], {"data-limit": name});
  }));
  previous = {stats};
}

async function refresh() {
  const error = document.getElementById("error");
  try {
    const [health, stats, routes, upstreams, limits] = await Promise.all(
      ["/healthz", "/stats", "/routes", "/upstreams", "/ratelimits"].map(get));
    render(health, stats, routes, upstreams, limits);
    error.style.display = "none";
    document.body.dataset.loaded = "true";
  } catch (e) {
    if (e.auth) {
      document.getElementById("auth").style.display = "block";
      error.textContent = token ? "The admin token was refused." : "This admin API needs its bearer token.";
    } else {
      error.textContent = "Cannot reach the admin API: " + e.message;
    }
    error.style.display = "block";
  } finally {
    setTimeout(refresh, REFRESH);
  }
}

document.getElementById("auth-form").addEventListener("submit", ev => {
  ev.preventDefault();
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem("fastgw-admin-token", token);
  document.getElementById("auth").style.display = "none";
});
refresh();
</script>
</body>
</html>
"""

STATUS_PAGE: bytes = _HTML.encode("utf-8")
