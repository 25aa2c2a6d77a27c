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
