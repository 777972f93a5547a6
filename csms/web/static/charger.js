// Fuse Guard operator view: the charger panel. Click a charger's row to open it: the charger's state, its
// configuration as it last reported it, and buttons for the operator's commands. A command asks for
// confirmation, then is sent with the operator token ([http] operator_token), which is typed into the panel
// once and kept for this browser tab only (sessionStorage), never with the read token. Everything from the
// server is inserted as text, never as HTML.
"use strict";

(function () {
  const $ = (sel) => document.querySelector(sel);
  const panel = $("#charger-panel");
  let current = null;  // the charger id the panel shows

  const { el, operatorToken, hasOperatorToken, postAsOperator } = window.csmsCommon;  // common.js

  // Each button: what it says, the command, its arguments, and the question asked before it is sent.
  function actions(c) {
    const tx = (c.transactions || [])[0];
    const list = [
      ["Soft reset", "reset", { type: "soft" }, "Reboot " + c.id + " once it is idle?"],
      ["Hard reset", "reset", { type: "hard" }, "Reboot " + c.id + " now? A running session is stopped."],
      ["Unlock connector", "unlock", { connector: 1 }, "Release the cable of " + c.id + "? A running session is stopped first."],
      ["Make inoperative", "change-availability", { availability: "Inoperative" }, "Take " + c.id + " out of service?"],
      ["Make operative", "change-availability", { availability: "Operative" }, "Put " + c.id + " back in service?"],
      ["Ask for its status", "trigger-message", { message: "StatusNotification" }, null],
      ["Send local list", "send-local-list", {}, "Send " + c.id + " its organisation's cards as its local list (then kept in step)?"],
      ["Fetch its log", "get-logs", {}, "Have " + c.id + " upload its diagnostics log here?"],
      ["Read configuration", (c.version === "ocpp2.0.1" ? "get-base-report" : "get-configuration"), {}, null],
    ];
    if (tx) list.unshift(["Stop session", "remote-stop", { transaction_id: String(tx.transaction_id) },
                          "Stop the session on " + c.id + " (card " + (tx.id_token || "?") + ")?"]);
    return list;
  }

  async function send(command, body, question) {
    if (question && !window.confirm(question)) return;
    const operator = operatorToken($("#operator-token").value);
    const out = $("#command-result");
    if (!operator) { out.textContent = "Type the operator token ([http] operator_token) first."; return; }
    out.textContent = command + "…";
    try {
      const { resp, answer } = await postAsOperator(
        "/api/stations/" + encodeURIComponent(current) + "/commands/" + command, body, operator);
      out.textContent = resp.ok ? command + ": " + answer.status + (Object.keys(answer.reply || {}).length > 1
        ? "  " + JSON.stringify(answer.reply) : "") : command + " refused (" + resp.status + "): " + answer.error;
      if (resp.ok && /configuration|report/.test(command)) setTimeout(loadConfiguration, 500);
    } catch (e) {
      out.textContent = command + " failed: " + e.message;
    }
  }

  async function loadConfiguration() {
    const token = localStorage.getItem("csms-token");
    const resp = await fetch("/api/chargers/" + encodeURIComponent(current) + "/configuration",
                             { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
    if (!resp.ok) return;
    const body = await resp.json();
    $("#configuration").replaceChildren(...body.settings.map((s) => el("tr", {},
      el("td", {}, s.key), el("td", {}, s.value == null ? "(not shown)" : s.value),
      el("td", { class: "muted" }, s.readonly ? "read-only" : ""),
      el("td", { class: "muted" }, s.source + ", " + new Date(s.updated_at * 1000).toLocaleString()))));
    $("#configuration-empty").hidden = body.settings.length > 0;
  }

  async function open(charger) {
    current = charger.id;
    try {  // the detail has the running transactions (the status list does not)
      const resp = await fetch("/api/chargers/" + encodeURIComponent(charger.id), { cache: "no-store",
        headers: { Authorization: "Bearer " + localStorage.getItem("csms-token") } });
      if (resp.ok) charger = Object.assign({}, charger, await resp.json());
    } catch (e) { /* the panel still opens with what the status poll had */ }
    $("#panel-title").textContent = charger.id;
    $("#panel-state").textContent = (charger.connected ? "online " + (charger.version || "") : "offline") + " · " +
      charger.control.replaceAll("_", " ") + " · limit " + (charger.limit == null ? "–" : charger.limit.toFixed(1)) + " A";
    $("#command-result").textContent = "";
    const reservations = (charger.reservations || []).map((r) => "#" + r.id + " for " + r.id_token +
      (r.connector ? " on connector " + r.connector : " on any connector") + " until " +
      new Date(r.expires_at * 1000).toLocaleString());
    const maintenance = [["firmware", charger.firmware_status], ["log", charger.log_status]]
      .filter(([, m]) => m).map(([kind, m]) => kind + " " + m.status + " (" + new Date(m.at * 1000).toLocaleString() + ")");
    $("#panel-facts").textContent = ["Reservations: " + (reservations.join("; ") || "none"),
                                     ...maintenance].join(" · ");
    $("#operator-row").hidden = hasOperatorToken();
    $("#actions").replaceChildren(...actions(charger).map(([label, command, body, question]) => {
      const b = el("button", { type: "button", disabled: !charger.connected }, label);
      b.addEventListener("click", () => send(command, body, question));
      return b;
    }));
    $("#configuration").replaceChildren();
    loadConfiguration();
    panel.showModal();
  }

  $("#groups").addEventListener("click", (ev) => {
    const row = ev.target.closest("tr[data-charger]");
    const status = window.csmsDashboard && window.csmsDashboard.lastStatus;
    if (!row || !status) return;
    const charger = status.chargers.find((c) => c.id === row.getAttribute("data-charger"));
    if (charger) open(charger);
  });
  $("#panel-close").addEventListener("click", () => panel.close());
})();
