// Progressive enhancement only: every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Filters apply as soon as a select changes.
  document.querySelectorAll("form[data-autosubmit] select").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  // Buttons that need a second thought.
  document.querySelectorAll("[data-confirm]").forEach(function (el) {
    el.addEventListener("click", function (ev) {
      if (!window.confirm(el.getAttribute("data-confirm"))) { ev.preventDefault(); }
    });
  });
  watchPresence(document.getElementById("presence"));
});

// Agent collision: say every few seconds that this page is open (and whether a reply is being
// typed), and show who else is on the ticket. Same-origin POST with the page's CSRF token.
function watchPresence(box) {
  if (!box) { return; }
  var csrf = document.querySelector("input[name=csrf_token]");
  var typedAt = 0;
  var every = 5000;
  document.querySelectorAll("textarea[data-typing]").forEach(function (area) {
    area.addEventListener("input", function () {
      var first = Date.now() - typedAt > every;
      typedAt = Date.now();
      if (first) { poll(); }  // show "typing" to the others at once, not at the next tick
    });
  });
  function show(others) {
    box.hidden = others.length === 0;
    box.textContent = others.length ? "Also here: " + others.map(function (o) {
      return (o.name || o.email) + " (" + o.state + ")";
    }).join(", ") : "";
  }
  function poll() {
    var state = Date.now() - typedAt < every ? "typing" : "viewing";
    fetch(box.getAttribute("data-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf ? csrf.value : ""},
      body: JSON.stringify({state: state})
    }).then(function (r) { return r.ok ? r.json() : null; }).then(function (data) {
      if (data) { every = (data.poll_seconds || 5) * 1000; show(data.others); }
    }).catch(function () { /* the next tick tries again */ });
  }
  poll();
  window.setInterval(poll, every);
}
