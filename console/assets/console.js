// Refreshes every [data-live] element from its URL each second (an HTML
// fragment the server renders and escapes), and asks before a form with
// data-confirm is sent. Nothing is fetched from anywhere else.
"use strict";
(function () {
  function refresh() {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      fetch(el.dataset.live, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { if (r.ok) { return r.text(); } if (r.status === 401) { location.href = "/console/login"; } throw new Error(r.status); })
        .then(function (html) { el.innerHTML = html; })
        .catch(function () { el.classList.add("stale"); });
    });
  }
  setInterval(refresh, 1000);
  document.addEventListener("submit", function (e) {
    var msg = e.target.dataset.confirm;
    if (msg && !window.confirm(msg)) { e.preventDefault(); }
  });
})();
