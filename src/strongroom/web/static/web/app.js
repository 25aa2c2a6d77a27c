// Strongroom web pages: the only script of our own on them (the page's CSP allows scripts from
// this origin only: no inline script, no eval). It registers the Lite app's service worker,
// whose scope is /app/. htmx (htmx.min.js) reads its settings from <meta name="htmx-config">
// and sends the CSRF token from <body hx-headers>, so nothing else is needed here.
"use strict";

(function registerServiceWorker() {
  if (!("serviceWorker" in navigator) || !location.pathname.startsWith("/app/")) {
    return;
  }
  window.addEventListener("load", function () {
    navigator.serviceWorker.register("/app/sw.js", { scope: "/app/" }).catch(function (error) {
      console.warn("Strongroom: the offline page is not available:", error);
    });
  });
})();

// Emailed links (verify an email, reset a password) carry their one-time token in the URL's
// fragment (#token=...), which the browser never sends to a server: it stays out of access logs
// and Referer headers. A form marked data-fragment-token takes it into its token field and drops
// it from the address bar and the history; data-autosubmit then sends the form at once (it is a
// POST: the token travels in the body). Without JavaScript, the field takes the token by hand.
(function fragmentTokens() {
  function take() {
    var form = document.querySelector("form[data-fragment-token]");
    var found = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    var field = form && form.querySelector("input[name=token]");
    if (!field || !found) {
      return;
    }
    field.value = decodeURIComponent(found[1]);
    history.replaceState(null, "", location.pathname);
    if (form.hasAttribute("data-autosubmit")) {
      form.requestSubmit();
    }
  }
  take();
  window.addEventListener("hashchange", take); // a link opened on the page it points to
})();

// A countdown to a moment (the store top-up barcode's 15 minutes): an element with
// data-countdown="<ISO time>" shows the minutes and seconds left, then its data-expired-text.
// Looked up on every tick, so a part htmx swapped in counts down too. The server decides what
// is expired; this only shows the time.
(function countdowns() {
  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }
  function tick() {
    var found = document.querySelectorAll("[data-countdown]");
    for (var i = 0; i < found.length; i++) {
      var element = found[i];
      var left = Math.floor((Date.parse(element.getAttribute("data-countdown")) - Date.now()) / 1000);
      element.textContent =
        left > 0
          ? pad(Math.floor(left / 60)) + ":" + pad(left % 60)
          : element.getAttribute("data-expired-text") || "00:00";
    }
  }
  tick();
  window.setInterval(tick, 1000);
})();
