// Checkout pages, progressively enhanced: live status over server-sent events, a countdown,
// and phone validation as the customer types. Every page works without this file.
(function () {
  "use strict";
  var live = document.querySelector("[data-events]");
  if (live && window.EventSource) {
    var source = new EventSource(live.getAttribute("data-events"));
    source.addEventListener("status", function (e) {
      if (e.data !== live.getAttribute("data-status")) {
        source.close();
        window.location.reload();
      }
    });
    // Live updates that stop (the server went away) would leave "waiting" on screen: after
    // 5 s without a connection, say so.
    var warning = null, timer = null;
    source.addEventListener("error", function () {
      if (timer) { return; }
      timer = window.setTimeout(function () {
        if (warning) { return; }
        warning = document.createElement("p");
        warning.className = "error stale";
        warning.setAttribute("role", "alert");
        warning.textContent = live.getAttribute("data-stale");
        live.parentNode.insertBefore(warning, live.nextSibling);
      }, 5000);
    });
    source.addEventListener("open", function () {
      if (timer) { window.clearTimeout(timer); timer = null; }
      if (warning) { warning.parentNode.removeChild(warning); warning = null; }
    });
  }

  var countdown = document.querySelector("[data-deadline]");
  if (countdown) {
    var deadline = Date.now() + 1000 * parseInt(countdown.getAttribute("data-deadline"), 10);
    var tick = function () {
      var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
      countdown.textContent = String(left);
      if (left > 0) { window.setTimeout(tick, 1000); }
    };
    tick();
  }

  var phone = document.querySelector("input[name=phone]");
  if (phone) {
    var message = document.getElementById("phone-error");
    var check = function (final) {
      var digits = phone.value.replace(/[\s\-().]/g, "");
      var ok = /^(?:\+?254|0)?[17]\d{8}$/.test(digits);
      var show = !ok && (final || digits.length >= 10);
      phone.setAttribute("aria-invalid", show ? "true" : "false");
      message.textContent = show ? phone.getAttribute("data-invalid") : "";
      return ok;
    };
    phone.addEventListener("input", function () { check(false); });
    phone.form.addEventListener("submit", function (e) {
      if (!check(true)) { e.preventDefault(); phone.focus(); }
    });
  }
})();
