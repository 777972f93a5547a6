// Fuse Guard operator view. No build step: plain browser JavaScript and the vendored uPlot.
//
// The token arrives once, in the login link's URL fragment (#token=...) or typed into the form; it is
// kept in this browser's localStorage and sent as "Authorization: Bearer" on every API call. The page
// polls /api/status every POLL_MS, appends each group's phase currents to its chart, and redraws the
// tables and the event timeline. Everything from the server is inserted as text, never as HTML.
"use strict";

(function () {
  const POLL_MS = 1000;
  const WINDOW_S = 600;            // the chart shows the last ten minutes
  const TOKEN_KEY = "csms-token";
  const PHASE_COLOURS = { 1: "#8b4513", 2: "#1d2330", 3: "#8a8f99" };  // IEC 60446: brown, black, grey

  const state = { charts: {}, series: {}, groupsShown: "", updates: 0, lastStatus: null, timer: null };
  window.csmsDashboard = state;  // for people and tests poking at the page

  const $ = (sel) => document.querySelector(sel);

  const el = window.csmsCommon.el;  // common.js

  const fmtA = (a) => (a == null ? "–" : a.toFixed(1));
  const fmtTime = (t) => (t == null ? "–" : new Date(t * 1000).toLocaleTimeString());

  // -- token --------------------------------------------------------------------------------------

  function takeTokenFromFragment() {
    const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (!m) return;
    localStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);  // the link works once
  }

  const token = () => localStorage.getItem(TOKEN_KEY);

  function showLogin(message) {
    clearTimeout(state.timer);
    $("#login").hidden = false;
    $("#logout").hidden = true;
    const err = $("#login-error");
    err.hidden = !message;
    err.textContent = message || "";
    $("#token").focus();
  }

  $("#login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    localStorage.setItem(TOKEN_KEY, $("#token").value.trim());
    $("#token").value = "";
    start();
  });

  $("#logout").addEventListener("click", () => {
    localStorage.removeItem(TOKEN_KEY);
    showLogin("");
  });

  class Unauthorized extends Error {}

  async function api(path) {
    const resp = await fetch(path, { headers: { Authorization: "Bearer " + token() }, cache: "no-store" });
    if (resp.status === 401) throw new Unauthorized("the token was refused");
    const body = await resp.json();
    if (!resp.ok) throw new Error(body.error || resp.statusText);
    return body;
  }

  // -- charts -------------------------------------------------------------------------------------

  function chartOptions(group, width) {
    const series = [{}];
    for (const p of group.phases) series.push({ label: "L" + p, stroke: PHASE_COLOURS[p], width: 2, value: (u, v) => fmtA(v) + " A" });
    series.push({ label: "Fuse", stroke: "#c5221f", width: 1.5, dash: [10, 5], value: (u, v) => fmtA(v) + " A" });
    series.push({ label: "Group max", stroke: "#e8a317", width: 1.5, dash: [4, 4], value: (u, v) => fmtA(v) + " A" });
    return {
      width: width, height: 260,
      scales: { x: { time: true }, y: { range: (u, min, max) => [Math.min(0, min), Math.max(max, group.supply_max_current) * 1.08] } },
      axes: [{}, { label: "A per phase", size: 60 }],
      series: series,
    };
  }

  function groupSeries(group) {
    const empty = () => [];
    return { x: empty(), phases: group.phases.map(empty), fuse: empty(), max: empty() };
  }

  function pushPoint(group, at, currents) {
    const s = state.series[group.id];
    if (s.x.length && at <= s.x[s.x.length - 1]) return;
    s.x.push(at);
    group.phases.forEach((p, i) => s.phases[i].push(currents ? currents[String(p)] ?? null : null));
    s.fuse.push(group.supply_max_current);
    s.max.push(group.max_current_online);
    while (s.x.length && s.x[0] < at - WINDOW_S) {
      s.x.shift(); s.fuse.shift(); s.max.shift();
      s.phases.forEach((a) => a.shift());
    }
  }

  function chartData(id) {
    const s = state.series[id];
    return [s.x, ...s.phases, s.fuse, s.max];
  }

  async function seedHistory(group) {
    if (!group.meter) return;
    try {
      const h = await api("/api/history/phases?group=" + encodeURIComponent(group.id) + "&points=600");
      for (const r of h.currents) pushPoint(group, r.at, { 1: r.l1, 2: r.l2, 3: r.l3 });
    } catch (e) {
      if (e instanceof Unauthorized) throw e;
      // history is a nicety: the live points still come
    }
  }

  // -- rendering ----------------------------------------------------------------------------------

  function buildGroups(status) {
    const main = $("#groups");
    main.replaceChildren();
    for (const id of Object.keys(state.charts)) state.charts[id].destroy();
    state.charts = {};
    state.series = {};
    for (const g of status.groups) {
      const section = el("section", { class: "group", "data-group": g.id },
        el("h2", {}, g.name, " ", el("span", { class: "muted" }, "(" + g.id + ")")),
        el("div", { class: "facts" }),
        el("div", { class: "readout" }),
        el("div", { class: "chart" }),
        el("table", { class: "circuits", hidden: true },
          el("thead", {}, el("tr", {}, ...["Circuit", "Under", "Fuse A", "Load L1", "Load L2", "Load L3",
            "Planned A", "Budget A", "Meter"].map((h) => el("th", {}, h)))),
          el("tbody", {})),
        el("table", { class: "chargers" },
          el("thead", {}, el("tr", {}, ...["Charger", "Connection", "State", "Limit A", "In force A",
            "Draw L1", "Draw L2", "Draw L3", "Phases", "Why"].map((h) => el("th", {}, h)))),
          el("tbody", {})),
        el("div", { class: "commissioning" }));
      main.append(section);
      state.series[g.id] = groupSeries(g);
    }
    state.groupsShown = status.groups.map((g) => g.id).join(",");
  }

  function renderFacts(section, g, meters) {
    const facts = section.querySelector(".facts");
    const d = g.decision;
    const budget = d ? g.phases.map((p) => "L" + p + " " + fmtA(d.budget[String(p)])).join(" · ") : "no decision yet";
    const meter = g.meter ? meters.find((m) => m.serial === g.meter) : null;
    const items = [
      el("span", {}, el("b", {}, "Fuse "), fmtA(g.supply_max_current) + " A"),
      el("span", {}, el("b", {}, "Group max "), fmtA(g.max_current_online) + " A online, " + fmtA(g.max_current_offline) + " A offline"),
      el("span", { class: "budget" }, el("b", {}, "Budget "), budget + " A"),
    ];
    if (meter) {
      const age = meter.age == null ? "no reading yet" : meter.age.toFixed(1) + " s old";
      items.push(el("span", { class: "meter " + meter.status, "data-meter": meter.serial },
        el("b", {}, "Meter " + meter.serial + " "), meter.status + " (" + age + (meter.status === "online" ? "" : "; " + meter.reason) + ")"));
    } else {
      items.push(el("span", { class: "meter none" }, el("b", {}, "Meter "), "none: static budget"));
    }
    if (!g.active) items.push(el("span", { class: "error" }, "group inactive"));
    facts.replaceChildren(...items);
  }

  function renderReadout(section, g, currents) {
    const parts = g.phases.map((p) => {
      const a = currents ? currents[String(p)] : null;
      const over = a != null && a > g.supply_max_current;
      return el("span", { class: over ? "over" : "", "data-phase": String(p) }, "L" + p + " " + fmtA(a) + " A");
    });
    parts.push(el("span", { class: "muted" }, g.phase_current ? "mains meter" : "sum of the chargers' own meters"));
    section.querySelector(".readout").replaceChildren(...parts);
  }

  function renderChart(section, g) {
    const box = section.querySelector(".chart");
    const width = Math.max(320, box.clientWidth || 800);
    if (!state.charts[g.id]) state.charts[g.id] = new uPlot(chartOptions(g, width), chartData(g.id), box);
    else state.charts[g.id].setData(chartData(g.id));
  }

  function renderChargers(section, g, chargers) {
    const rows = chargers.filter((c) => c.group === g.id).map((c) => {
      const conn = c.connected ? "online " + (c.version || "") : "offline";
      // The latest firmware update / log upload status, as the charger reported it.
      const maint = [["firmware", c.firmware_status], ["logs", c.log_status]].filter(([, m]) => m)
        .map(([what, m]) => what + " " + m.status + " " + fmtTime(m.at));
      return el("tr", { "data-charger": c.id },
        el("td", {}, c.id),
        el("td", { class: "connection", title: maint.join(" · ") },
          conn, ...maint.map((t) => el("div", { class: "muted maintenance" }, t))),
        el("td", {}, el("span", { class: "state " + c.control, title: c.control_reason }, c.control.replaceAll("_", " "))),
        el("td", c.operator_cap ? { class: "num limit capped", title: "operator cap " + fmtA(c.operator_cap.limit) + " A"
          + (c.operator_cap.until ? " until " + c.operator_cap.until : "") + " (set by " + c.operator_cap.by + ")" }
          : { class: "num limit" }, fmtA(c.limit)),
        el("td", { class: "num in-force" }, fmtA(c.limit_in_force)),
        ...[0, 1, 2].map((i) => el("td", { class: "num draw draw-l" + (i + 1) }, i < c.phases ? fmtA(c.draw[i]) : "")),
        el("td", {}, c.limit_phases.map((p) => "L" + p).join("+")),
        el("td", { class: "reason", title: c.explain }, c.reason));
    });
    section.querySelector("table.chargers tbody").replaceChildren(...rows);
  }

  // One row per circuit (sub-board): what flows through it per phase against its fuse, and the balancer's plan.
  function renderCircuits(section, g) {
    const table = section.querySelector("table.circuits");
    const list = g.circuits || [];
    table.hidden = list.length === 0;
    const per = (values) => values ? g.phases.map((p) => "L" + p + " " + fmtA(values[String(p)])).join(" · ") : "-";
    table.querySelector("tbody").replaceChildren(...list.map((c) => el("tr", { "data-circuit": c.id },
      el("td", {}, c.id + (c.name ? " (" + c.name + ")" : "")),
      el("td", {}, c.parent || "main fuse"),
      el("td", { class: "num" }, fmtA(c.max_current)),
      ...[1, 2, 3].map((p) => {
        const a = c.current[String(p)];
        return el("td", { class: "num load" + (a != null && a > c.max_current ? " over" : "") }, a == null ? "" : fmtA(a));
      }),
      el("td", { class: "num" }, per(c.planned)),
      el("td", { class: "num", title: Object.values(c.notes).join("\n") }, per(c.budget)),
      el("td", {}, c.meter ? c.meter + " " + c.meter_status : "none (" + c.current_source + ")"))));
  }

  function renderEvents(events) {
    $("#timeline-section").hidden = false;
    $("#events").replaceChildren(...events.map((e) => {
      const who = e.station_id || e.meter || e.group_id || "";
      const detail = Object.entries(e.detail || {}).map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v)).join(", ");
      return el("li", {}, el("span", { class: "muted" }, fmtTime(e.at)), el("span", { class: "kind" }, e.kind),
        el("span", {}, who), el("span", {}, detail));
    }));
  }

  async function render(status) {
    const ids = status.groups.map((g) => g.id).join(",");
    if (ids !== state.groupsShown) {
      buildGroups(status);
      for (const g of status.groups) await seedHistory(g);
    }
    for (const g of status.groups) {
      const section = document.querySelector('section.group[data-group="' + CSS.escape(g.id) + '"]');
      const currents = g.phase_current || g.chargers_current;
      pushPoint(g, status.at, currents);
      renderFacts(section, g, status.meters);
      renderReadout(section, g, currents);
      renderChart(section, g);
      renderCircuits(section, g);
      renderChargers(section, g, status.chargers);
      if (window.csmsCommissioning) window.csmsCommissioning.render(section, g);  // commissioning.js
    }
    renderEvents(status.events || []);
    const cfg = status.config;
    const cfgText = cfg ? " · config " + cfg.version + " loaded " + fmtTime(cfg.loaded_at) +
      (cfg.last_refused ? " (latest reload refused: see the events)" : "") : "";
    $("#status-line").textContent = status.connected_stations + " station(s) connected · updated " +
      fmtTime(status.at) + cfgText;
  }

  // -- the loop -----------------------------------------------------------------------------------

  async function poll() {
    try {
      const status = await api("/api/status?events=30");
      state.lastStatus = status;
      await render(status);
      state.updates += 1;
      $("#banner").hidden = true;
    } catch (e) {
      if (e instanceof Unauthorized) {
        localStorage.removeItem(TOKEN_KEY);
        showLogin("That token was refused; check the [http] token in the site config.");
        return;
      }
      $("#banner").hidden = false;
      $("#banner").textContent = "Cannot reach the central system (" + e.message + "); retrying…";
    }
    state.timer = setTimeout(poll, POLL_MS);
  }

  function start() {
    clearTimeout(state.timer);
    $("#login").hidden = true;
    $("#logout").hidden = false;
    poll();
  }

  window.addEventListener("resize", () => {
    for (const [id, chart] of Object.entries(state.charts)) {
      const box = document.querySelector('section.group[data-group="' + CSS.escape(id) + '"] .chart');
      if (box) chart.setSize({ width: Math.max(320, box.clientWidth), height: 260 });
    }
  });

  takeTokenFromFragment();
  if (token()) start(); else showLogin("");
})();
