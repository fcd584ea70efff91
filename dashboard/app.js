// The Portcullis dashboard (docs/dashboard.md): plain JS, no framework, uPlot for charts.
// The admin key lives in sessionStorage and travels only as a bearer header. Live data
// comes from /dashboard/data once a second (rendered in the gateway's worker); keys and
// usage come from the admin API. Every piece of server data is put in the page as text
// (textContent), never as HTML.
"use strict";
(function () {
  const STORE = "portcullis.adminKey";
  const $ = (id) => document.getElementById(id);
  let adminKey = sessionStorage.getItem(STORE);
  let timer = null;
  let inflight = false;
  let tick = 0;
  const charts = {};
  let latencyProviders = "";
  let keyRows = [];
  let lastUsed = {};
  let sortBy = "name",
    sortDir = 1;

  class Unauthorized extends Error {}

  async function api(path, init) {
    const headers = Object.assign({ authorization: "Bearer " + adminKey }, (init && init.headers) || {});
    const r = await fetch(path, Object.assign({}, init, { headers, cache: "no-store", credentials: "omit" }));
    if (r.status === 401) throw new Unauthorized("the admin key was refused");
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try {
        msg = (await r.json()).error.message;
      } catch {
        /* not JSON */
      }
      throw new Error(msg);
    }
    return r;
  }

  function text(el, v) {
    el.textContent = v;
  }
  function fmt(n, d) {
    return n === null || n === undefined || Number.isNaN(n)
      ? "–"
      : Number(n).toLocaleString("en-US", { maximumFractionDigits: d === undefined ? 2 : d });
  }
  function usd(n) {
    return n === null || n === undefined ? "–" : "$" + Number(n).toFixed(4);
  }
  function cell(tr, v, cls) {
    const td = document.createElement("td");
    td.textContent = v;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function status(msg) {
    text($("status"), msg);
  }

  // ---- sign in / out ----
  function showApp(on) {
    $("login").hidden = on;
    $("app").hidden = !on;
    $("nav").hidden = !on;
    $("logout").hidden = !on;
  }
  function signOut(msg) {
    sessionStorage.removeItem(STORE);
    adminKey = null;
    if (timer !== null) clearInterval(timer);
    timer = null;
    showApp(false);
    text($("login-error"), msg || "");
    $("admin-key").focus();
  }
  function failed(e) {
    if (e instanceof Unauthorized) return signOut("The admin key was refused.");
    status("Error: " + e.message);
  }
  async function start() {
    try {
      await refreshLive();
    } catch (e) {
      if (e instanceof Unauthorized) return signOut("The admin key was refused.");
    }
    showApp(true);
    status("Signed in.");
    refreshKeys().catch(failed);
    refreshUsage().catch(failed);
    timer = setInterval(() => {
      refreshLive().catch(failed);
    }, 1000);
  }
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = $("admin-key").value.trim();
    if (v === "") return text($("login-error"), "Enter the admin API key.");
    adminKey = v;
    sessionStorage.setItem(STORE, v);
    $("admin-key").value = "";
    text($("login-error"), "");
    start();
  });
  $("logout").addEventListener("click", () => signOut("Signed out."));

  // ---- live overview ----
  const STATE_TEXT = { closed: "● closed (healthy)", open: "✕ open (refusing)", half_open: "◐ half-open (probing)" };

  async function refreshLive() {
    if (inflight) return;
    inflight = true;
    try {
      const d = await (await api("/dashboard/data")).json();
      renderLive(d);
      if (tick++ % 5 === 0) refreshHour().catch(failed);
    } finally {
      inflight = false;
    }
  }

  function sum(a, from) {
    let s = 0;
    for (let i = from; i < a.length; i++) s += a[i];
    return s;
  }

  function renderLive(d) {
    const s = d.seconds;
    const n = s.requests.length;
    text($("stat-rps"), fmt(sum(s.requests, n - 10) / 10, 1));
    const req60 = sum(s.requests, 0),
      err60 = sum(s.errors, 0);
    text($("stat-error-rate"), req60 === 0 ? "0 %" : fmt((100 * err60) / req60, 1) + " %");
    text($("stat-active"), fmt(d.active, 0));
    text($("stat-requests"), fmt(d.totals.requests, 0));
    text($("stat-shed"), fmt(d.rejected.heap + d.rejected.memory + d.rejected.active_requests + d.rejected.event_loop_delay, 0));
    text($("stat-rate-limited"), fmt(d.rejected.rate_limit_requests + d.rejected.rate_limit_tokens, 0));
    text($("stat-circuit-open"), fmt(d.rejected.circuit_open, 0));

    const bt = $("breakers").tBodies[0];
    bt.replaceChildren();
    for (const [p, st] of Object.entries(d.breakers)) {
      const tr = document.createElement("tr");
      tr.dataset.provider = p;
      cell(tr, p);
      cell(tr, STATE_TEXT[st] || st, "state state-" + st).dataset.state = st;
      bt.appendChild(tr);
    }

    const lt = $("latency").tBodies[0];
    lt.replaceChildren();
    for (const [p, v] of Object.entries(d.recent.by_provider)) {
      const tr = document.createElement("tr");
      tr.dataset.provider = p;
      cell(tr, p);
      cell(tr, fmt(v.total.count, 0)).dataset.k = "count";
      cell(tr, fmt(v.total.p50_ms, 3)).dataset.k = "p50";
      cell(tr, fmt(v.total.p95_ms, 3)).dataset.k = "p95";
      cell(tr, fmt(v.total.p99_ms, 3)).dataset.k = "p99";
      cell(tr, fmt(v.upstream_ttfb.p50_ms, 3)).dataset.k = "ttfb_p50";
      cell(tr, fmt(v.overhead.p50_ms, 3)).dataset.k = "overhead_p50";
      cell(tr, fmt(v.overhead.p99_ms, 3)).dataset.k = "overhead_p99";
      lt.appendChild(tr);
    }
    renderCharts(s);
    // Not in the live region: a screen reader would announce it every second.
    text($("updated"), "Updated " + new Date(d.now_ms).toLocaleTimeString() + (d.draining ? " — draining" : ""));
  }

  function chart(id, series, data) {
    const el = $(id);
    const width = Math.max(280, Math.min(560, el.clientWidth || 560));
    if (charts[id] === undefined) {
      // Points as well as lines: a second with traffic between empty ones is still visible.
      for (const s of series) s.points = { show: true, size: 5 };
      charts[id] = new uPlot(
        { width, height: 200, series: [{}].concat(series), axes: [{}, { size: 60 }], legend: { live: false } },
        data,
        el,
      );
    } else {
      charts[id].setData(data);
    }
  }

  const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
  function renderCharts(s) {
    chart(
      "chart-rate",
      [
        { label: "requests/s", stroke: "#1f77b4", width: 2 },
        { label: "errors/s", stroke: "#d62728", width: 2, dash: [6, 4] },
      ],
      [s.t, s.requests, s.errors],
    );
    const provs = Object.keys(s.providers);
    if (provs.join("|") !== latencyProviders && charts["chart-latency"] !== undefined) {
      charts["chart-latency"].destroy();
      delete charts["chart-latency"];
    }
    latencyProviders = provs.join("|");
    const series = [],
      data = [s.t];
    provs.forEach((p, i) => {
      const c = COLOURS[i % COLOURS.length];
      series.push(
        { label: p + " p50", stroke: c, width: 2 },
        { label: p + " p95", stroke: c, width: 1, dash: [4, 3] },
        { label: p + " p99", stroke: c, width: 1, dash: [1, 3] },
      );
      data.push(s.providers[p].p50, s.providers[p].p95, s.providers[p].p99);
    });
    chart("chart-latency", series, data);
    chart(
      "chart-overhead",
      [
        { label: "overhead p50", stroke: "#2ca02c", width: 2 },
        { label: "overhead p99", stroke: "#2ca02c", width: 1, dash: [4, 3] },
      ],
      [s.t, s.overhead.p50, s.overhead.p99],
    );
  }

  function isoAgo(ms) {
    return new Date(Date.now() - ms).toISOString();
  }

  async function refreshHour() {
    const u = await (await api("/admin/usage?group_by=model&from=" + encodeURIComponent(isoAgo(3600000)))).json();
    let tin = 0,
      tout = 0,
      cost = 0;
    for (const r of u.data) {
      tin += r.input_tokens || 0;
      tout += r.output_tokens || 0;
      cost += r.cost_usd || 0;
    }
    text($("stat-tokens-in"), fmt(tin, 0));
    text($("stat-tokens-out"), fmt(tout, 0));
    text($("stat-cost-hour"), usd(cost));
  }

  // ---- keys ----
  function limitOf(k, which) {
    return k.limits && typeof k.limits[which] === "number" ? k.limits[which] : null;
  }
  function burn(td, spent, cap) {
    if (cap === null) {
      td.textContent = spent === null ? "no budget" : usd(spent) + " (no budget)";
      return;
    }
    const pct = cap === 0 ? 100 : Math.min(100, (100 * (spent || 0)) / cap);
    const m = document.createElement("meter");
    m.min = 0;
    m.max = 100;
    m.value = pct;
    m.low = 70;
    m.high = 90;
    m.optimum = 0;
    m.setAttribute("aria-label", "budget used");
    const label = document.createElement("span");
    label.textContent = " " + usd(spent || 0) + " of " + usd(cap) + " (" + fmt(pct, 0) + " %)";
    td.replaceChildren(m, label);
    td.dataset.pct = String(pct);
  }
  function sortValue(k) {
    switch (sortBy) {
      case "id":
        return k.id;
      case "day":
        return k.spend ? k.spend.day_usd : -1;
      case "month":
        return k.spend ? k.spend.month_usd : -1;
      case "last":
        return lastUsed[k.id] || "";
      default:
        return k.name.toLowerCase();
    }
  }
  function renderKeys() {
    const rows = keyRows.slice().sort((a, b) => {
      const x = sortValue(a),
        y = sortValue(b);
      return x < y ? -sortDir : x > y ? sortDir : 0;
    });
    const tb = $("keys-table").tBodies[0];
    tb.replaceChildren();
    for (const k of rows) {
      const tr = document.createElement("tr");
      tr.dataset.keyId = k.id;
      cell(tr, k.name);
      cell(tr, k.id, "mono");
      cell(tr, k.models === null ? "all" : k.models.join(", "));
      burn(cell(tr, ""), k.spend ? k.spend.day_usd : null, limitOf(k, "usd_per_day"));
      burn(cell(tr, ""), k.spend ? k.spend.month_usd : null, limitOf(k, "usd_per_month"));
      cell(tr, lastUsed[k.id] ? new Date(lastUsed[k.id]).toLocaleString() : "never");
      cell(tr, k.revoked_at ? "✕ revoked" : "● active", k.revoked_at ? "state state-open" : "state state-closed");
      const act = cell(tr, "");
      if (!k.revoked_at) {
        const edit = document.createElement("button");
        edit.type = "button";
        edit.textContent = "Edit";
        edit.setAttribute("aria-label", "Edit key " + k.name);
        edit.addEventListener("click", () => editKey(k));
        const rev = document.createElement("button");
        rev.type = "button";
        rev.textContent = "Revoke";
        rev.setAttribute("aria-label", "Revoke key " + k.name);
        rev.addEventListener("click", () => revokeKey(k));
        act.replaceChildren(edit, document.createTextNode(" "), rev);
      }
      tb.appendChild(tr);
    }
    for (const th of $("keys-table").tHead.rows[0].cells) {
      const b = th.querySelector("button");
      if (b) th.setAttribute("aria-sort", b.dataset.sort === sortBy ? (sortDir === 1 ? "ascending" : "descending") : "none");
    }
  }
  async function refreshKeys() {
    const [list, usage] = await Promise.all([
      api("/admin/keys").then((r) => r.json()),
      api("/admin/usage?group_by=key&from=2000-01-01").then((r) => r.json()),
    ]);
    keyRows = list.data;
    lastUsed = {};
    for (const u of usage.data) if (u.key) lastUsed[u.key] = u.last_used;
    renderKeys();
  }
  for (const b of $("keys-table").tHead.querySelectorAll("button[data-sort]")) {
    b.addEventListener("click", () => {
      if (sortBy === b.dataset.sort) sortDir = -sortDir;
      else {
        sortBy = b.dataset.sort;
        sortDir = 1;
      }
      renderKeys();
    });
  }
  function keyInput() {
    const body = { name: $("key-name").value.trim() };
    const models = $("key-models")
      .value.split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    const limits = {};
    const day = $("key-usd-day").value,
      month = $("key-usd-month").value;
    if (day !== "") limits.usd_per_day = Number(day);
    if (month !== "") limits.usd_per_month = Number(month);
    return { body, models, limits };
  }
  function resetKeyForm() {
    $("key-form").reset();
    $("key-edit-id").value = "";
    text($("key-form-legend"), "Create a key");
    text($("key-submit"), "Create");
    $("key-cancel").hidden = true;
  }
  function editKey(k) {
    $("key-edit-id").value = k.id;
    $("key-name").value = k.name;
    $("key-models").value = k.models === null ? "" : k.models.join(", ");
    $("key-usd-day").value = limitOf(k, "usd_per_day") ?? "";
    $("key-usd-month").value = limitOf(k, "usd_per_month") ?? "";
    text($("key-form-legend"), "Edit key " + k.id);
    text($("key-submit"), "Save");
    $("key-cancel").hidden = false;
    $("key-name").focus();
  }
  $("key-cancel").addEventListener("click", resetKeyForm);
  $("key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const { body, models, limits } = keyInput();
    if (body.name === "") return text($("key-error"), "A key needs a name.");
    text($("key-error"), "");
    const id = $("key-edit-id").value;
    try {
      if (id === "") {
        if (models.length > 0) body.models = models;
        if (Object.keys(limits).length > 0) body.limits = limits;
        const created = await (
          await api("/admin/keys", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
        ).json();
        text($("secret"), created.key);
        $("secret-box").hidden = false;
        $("secret-dismiss").focus();
      } else {
        body.models = models.length > 0 ? models : null;
        body.limits = limits;
        await api("/admin/keys/" + encodeURIComponent(id), {
          method: "PATCH",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        });
        status("Key " + id + " updated.");
      }
      resetKeyForm();
      await refreshKeys();
    } catch (e) {
      if (e instanceof Unauthorized) return failed(e);
      text($("key-error"), e.message);
    }
  });
  $("secret-dismiss").addEventListener("click", () => {
    text($("secret"), "");
    $("secret-box").hidden = true;
  });
  async function revokeKey(k) {
    if (!window.confirm("Revoke key " + k.name + " (" + k.id + ")? Clients using it get 401 at once.")) return;
    try {
      await api("/admin/keys/" + encodeURIComponent(k.id), { method: "DELETE" });
      status("Key " + k.id + " revoked.");
      await refreshKeys();
    } catch (e) {
      failed(e);
    }
  }

  // ---- usage ----
  function top(tableId, rows, label) {
    const tb = $(tableId).tBodies[0];
    tb.replaceChildren();
    rows.sort((a, b) => b.cost_usd - a.cost_usd);
    for (const r of rows.slice(0, 10)) {
      const tr = document.createElement("tr");
      cell(tr, label(r));
      cell(tr, fmt(r.requests, 0)).dataset.k = "requests";
      cell(tr, fmt(r.cost_usd, 6)).dataset.k = "cost";
      tb.appendChild(tr);
    }
  }
  function usageFrom() {
    return isoAgo(Number($("usage-window").value));
  }
  async function refreshUsage() {
    const from = encodeURIComponent(usageFrom());
    const get = (g) => api("/admin/usage?group_by=" + g + "&from=" + from).then((r) => r.json());
    const [keys, models, sessions, users] = await Promise.all([get("key"), get("model"), get("session"), get("user")]);
    top("top-keys", keys.data, (r) => (r.key_name ? r.key_name + " (" + r.key + ")" : r.key || "(no key)"));
    top("top-models", models.data, (r) => r.model || "(none)");
    top("top-sessions", sessions.data, (r) => r.session || "(no session)");
    top("top-users", users.data, (r) => r.user || "(no user id)");
  }
  $("usage-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    refreshUsage().catch(failed);
  });
  $("usage-csv").addEventListener("click", async () => {
    try {
      const r = await api("/admin/usage?group_by=key&format=csv&from=" + encodeURIComponent(usageFrom()));
      const url = URL.createObjectURL(await r.blob());
      const a = document.createElement("a");
      a.href = url;
      a.download = "portcullis-usage.csv";
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      failed(e);
    }
  });

  if (adminKey !== null) start();
  else showApp(false);
})();
