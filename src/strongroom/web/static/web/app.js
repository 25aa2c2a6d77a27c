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

// Copy buttons (the gift's claim link and code): a button marked data-copy="<field id>" puts
// that field's value on the clipboard and says data-copied for a moment. They are hidden in the
// page and shown here, so without JavaScript there is no button that does nothing; the field
// is read-only text to select by hand.
(function copyButtons() {
  var buttons = document.querySelectorAll("button[data-copy]");
  Array.prototype.forEach.call(buttons, function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field || !navigator.clipboard) {
      return;
    }
    var label = button.textContent;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(field.value).then(
        function () {
          button.textContent = button.getAttribute("data-copied") || label;
          setTimeout(function () {
            button.textContent = label;
          }, 2000);
        },
        function () {
          field.select();
        }
      );
    });
  });
})();
