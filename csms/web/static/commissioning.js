// Fuse Guard operator view: the Commissioning section of each metered group. "Check wiring" starts the active
// check (POST /api/groups/ID/commission), after a confirmation, with the operator token ([http] operator_token)
// kept for this browser tab only (sessionStorage, shared with the charger panel), never with the read token.
// While a check runs its state and what it is doing are shown; then its report: each finding with its evidence
// and fix, and every charger it could not test with why. Below it, what the passive watch concluded from normal
// charging (the group's wiring_warnings in /api/status). dashboard.js calls render() on every poll. Everything
// from the server is inserted as text, never as HTML.
"use strict";

(function () {
  const REFRESH_MS = 30000;   // the latest report, when no check runs
  const RUNNING_MS = 2000;    // while one runs
  const groups = {};          // group id -> { report, fetchedAt, busy, message }

  const { el, operatorToken, hasOperatorToken, postAsOperator } = window.csmsCommon;  // common.js

  const when = (t) => (t == null ? "–" : new Date(t * 1000).toLocaleString());
  const readToken = () => localStorage.getItem("csms-token");

  async function latest(groupId) {
    const g = groups[groupId];
    g.fetchedAt = Date.now();
    try {
      const resp = await fetch("/api/commissioning?group=" + encodeURIComponent(groupId) + "&limit=1",
                               { headers: { Authorization: "Bearer " + readToken() }, cache: "no-store" });
      if (!resp.ok) return;
      const rows = await resp.json();
      g.report = rows[0] || null;
    } catch (e) { /* the next poll tries again */ }
  }

  async function start(section, groupId) {
    const g = groups[groupId];
    const question = "Check the wiring of group " + groupId + "? Every charger with a car charging is paused, " +
      "then released alone for a few seconds, one after the other (about 15 s per charger).";
    if (!window.confirm(question)) return;
    const input = section.querySelector(".commissioning .operator-token");
    const operator = operatorToken(input ? input.value : "");
    if (!operator) { g.message = "Type the operator token ([http] operator_token) first."; paint(section, groupId, null); return; }
    g.busy = true;
    g.message = "starting…";
    paint(section, groupId, null);
    try {
      const { resp, answer } = await postAsOperator("/api/groups/" + encodeURIComponent(groupId) + "/commission",
                                                    {}, operator);
      g.message = resp.ok ? "check #" + answer.id + " started" : "refused (" + resp.status + "): " + answer.error;
      if (resp.ok) g.report = { id: answer.id, group: groupId, state: "running", started_at: Date.now() / 1000 };
    } catch (e) {
      g.message = "failed: " + e.message;
    }
    g.busy = false;
    await latest(groupId);
    paint(section, groupId, null);
  }

  function skeleton(section, groupId) {
    let box = section.querySelector(".commissioning");
    if (box && box.childElementCount) return box;
    if (!box) { box = el("div", { class: "commissioning" }); section.append(box); }
    const button = el("button", { type: "button", class: "check-wiring" }, "Check wiring");
    button.addEventListener("click", () => start(section, groupId));
    box.append(
      el("h3", {}, "Commissioning"),
      el("div", { class: "commission-controls" },
        button,
        el("input", { type: "password", class: "operator-token", autocomplete: "off", minLength: 16,
                      placeholder: "operator token (kept for this tab)" }),
        el("span", { class: "commission-message muted", ariaLive: "polite" })),
      el("div", { class: "commission-report" }),
      el("h4", {}, "Passive watch ", el("span", { class: "muted" }, "what normal charging shows of the wiring")),
      el("div", { class: "passive-findings" }));
    return box;
  }

  function finding(f, extra) {
    return el("div", { class: "finding", "data-kind": f.kind },
      el("div", {}, el("b", {}, "[" + f.kind + "] " + f.subject + ": "), f.message, extra || ""),
      el("ul", { class: "evidence" }, ...(f.evidence || []).map((e) => el("li", {}, e))),
      el("div", { class: "fix" }, el("b", {}, "Fix: "), f.fix),
      ...Object.entries(f.config || {}).map(([path, value]) =>
        el("div", { class: "config" }, "config: " + path + " = " + JSON.stringify(value))));
  }

  function reportView(row) {
    if (!row) return [el("p", { class: "muted" }, "No check run yet.")];
    const head = "Check #" + row.id + " · " + row.state + " · started " + when(row.started_at) +
      (row.finished_at ? " · " + Math.round(row.finished_at - row.started_at) + " s" : "") + (row.by ? " · by " + row.by : "");
    const out = [el("p", { class: "report-head state-" + row.state }, head)];
    if (row.state === "running") {
      out.push(el("p", { class: "progress" }, row.progress || "running…"));
      return out;
    }
    const r = row.report || {};
    if (r.error) out.push(el("p", { class: "error" }, r.error));
    const findings = r.findings || [];
    if (row.state === "done") {
      out.push(el("p", { class: r.ok ? "verdict ok" : "verdict" }, r.ok ? "OK: the wiring matches the config"
        : findings.length ? findings.length + " finding(s)" : "No contradiction found, but not every charger could be tested"));
    }
    out.push(...findings.map((f) => finding(f)));
    const untested = (r.chargers || []).filter((c) => !c.tested);
    if (untested.length) {
      out.push(el("ul", { class: "untested" }, ...untested.map((c) =>
        el("li", { "data-charger-untested": c.id }, el("b", {}, c.id + " not tested: "), c.reason))));
    }
    return out;
  }

  function paint(section, groupId, warnings) {
    const g = groups[groupId];
    const box = skeleton(section, groupId);
    const running = g.report && g.report.state === "running";
    box.querySelector(".check-wiring").disabled = g.busy || running;
    box.querySelector(".operator-token").hidden = hasOperatorToken();
    box.querySelector(".commission-message").textContent = g.message || "";
    box.querySelector(".commission-report").replaceChildren(...reportView(g.report));
    if (warnings) {
      box.querySelector(".passive-findings").replaceChildren(...(warnings.length ? warnings.map((w) =>
        finding(w, " (" + w.events + " events, since " + when(w.since) + ")"))
        : [el("p", { class: "muted" }, "No contradiction with the config seen in normal charging.")]));
    }
  }

  // Called by dashboard.js on every poll with the group's section and its /api/status entry.
  function render(section, group) {
    if (!group.meter) return;  // a static group has no wiring to check
    const g = groups[group.id] || (groups[group.id] = { report: undefined, fetchedAt: 0, busy: false, message: "" });
    const running = g.report && g.report.state === "running";
    const due = Date.now() - g.fetchedAt > (running ? RUNNING_MS : REFRESH_MS);
    paint(section, group.id, group.wiring_warnings || []);
    if (due) latest(group.id).then(() => paint(section, group.id, null));
  }

  window.csmsCommissioning = { render: render, groups: groups };
})();
