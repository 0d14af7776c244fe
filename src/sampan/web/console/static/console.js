// Sampan console: the only script. No framework, no other origin (CSP script-src 'self').
// 1. A live run page polls the API's run view every 2 s and, when the run changed, swaps in the
//    server-rendered live region (pages still work without JS: the user reloads).
// 2. Buttons with data-confirm ask before a destructive action (cancel a run, refuse a job).
"use strict";

function startLiveRun(root) {
  const apiUrl = root.dataset.pollApi;
  const pageUrl = root.dataset.pollPage;
  let last = null;
  async function tick() {
    try {
      const res = await fetch(apiUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!res.ok) { return schedule(); }
      const text = await res.text();
      if (text !== last) {
        last = text;
        const page = await fetch(pageUrl, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (page.ok) {
          const doc = new DOMParser().parseFromString(await page.text(), "text/html");
          const fresh = doc.getElementById(root.id);
          if (fresh) {
            root.replaceChildren(...Array.from(fresh.childNodes).map((n) => document.importNode(n, true)));
            root.dataset.state = fresh.dataset.state || "";
          }
        }
      }
    } catch (err) { /* network hiccup: try again on the next tick */ }
    schedule();
  }
  function schedule() {
    if (root.dataset.state === "final") { return; }
    window.setTimeout(tick, 2000);
  }
  schedule();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-poll-api]").forEach(startLiveRun);
});

// Delegated, so buttons inside a refreshed live region keep asking too.
document.addEventListener("click", (event) => {
  const el = event.target instanceof Element ? event.target.closest("[data-confirm]") : null;
  if (el && !window.confirm(el.dataset.confirm)) { event.preventDefault(); }
});
