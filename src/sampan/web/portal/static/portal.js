// Sampan verification portal: the only script. No framework, no other origin (CSP script-src 'self').
// A running evaluation's page polls its progress JSON every 1.5 s, updates the bar, the current test and the
// finished tests in place, and reloads once the evaluation is final (the report is rendered by the server).
// Without JavaScript the page still works: the person reloads it.
"use strict";

function verdictWord(v) {
  return { pass: "passed", fail: "failed", skip: "not applicable", error: "error" }[v] || String(v);
}

function followEvaluation(root) {
  const url = root.dataset.progressUrl;
  const bar = document.getElementById("live-bar");
  const text = document.getElementById("live-text");
  const list = document.getElementById("live-done");
  const status = document.getElementById("eval-status");
  async function tick() {
    try {
      const res = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (res.ok) {
        const p = await res.json();
        if (status && p.status) { status.textContent = p.status; status.className = "badge " + p.status; }
        if (p.final) { window.location.reload(); return; }
        if (p.total) {
          bar.max = p.total;
          bar.value = p.index;
          bar.textContent = p.index + " / " + p.total;
          text.textContent = "Test " + p.index + " of " + p.total + (p.test_id ? ": " + p.test_id : "");
        }
        const items = (p.done || []).map((d) => {
          const li = document.createElement("li");
          const id = document.createElement("span");
          id.className = "mono";
          id.textContent = d.test_id;
          const badge = document.createElement("span");
          badge.className = "badge v-" + d.verdict;
          badge.textContent = verdictWord(d.verdict);
          li.append(id, " ", badge);
          return li;
        });
        list.replaceChildren(...items);
      }
    } catch (err) { /* network hiccup: try again on the next tick */ }
    window.setTimeout(tick, 1500);
  }
  window.setTimeout(tick, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-progress-url]").forEach(followEvaluation);
});

// Buttons with data-confirm ask before acting (refusing a release).
document.addEventListener("click", (event) => {
  const el = event.target instanceof Element ? event.target.closest("[data-confirm]") : null;
  if (el && !window.confirm(el.dataset.confirm)) { event.preventDefault(); }
});
