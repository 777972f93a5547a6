// Fuse Guard operator view: what the page's scripts share (dashboard.js, charger.js, commissioning.js).
// Everything from the server is inserted as text, never as HTML. The operator token ([http] operator_token) is
// typed once and kept for this browser tab only (sessionStorage), never with the read token.
"use strict";

(function () {
  const OPERATOR_KEY = "csms-operator-token";

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
    return node;
  }

  // The operator token kept for this tab, else what was typed (may be "").
  const operatorToken = (typed) => sessionStorage.getItem(OPERATOR_KEY) || (typed || "").trim();
  const hasOperatorToken = () => !!sessionStorage.getItem(OPERATOR_KEY);

  // POSTs ``body`` as JSON with the operator token: kept for the tab when the server takes it, forgotten when
  // it refuses it (401/403). Returns the response and its decoded JSON answer.
  async function postAsOperator(path, body, operator) {
    const resp = await fetch(path, {
      method: "POST", cache: "no-store", body: JSON.stringify(body),
      headers: { Authorization: "Bearer " + operator, "Content-Type": "application/json" } });
    const answer = await resp.json();
    if (resp.status === 401 || resp.status === 403) sessionStorage.removeItem(OPERATOR_KEY);
    else sessionStorage.setItem(OPERATOR_KEY, operator);
    return { resp, answer };
  }

  window.csmsCommon = { el: el, operatorToken: operatorToken, hasOperatorToken: hasOperatorToken,
                        postAsOperator: postAsOperator };
})();
