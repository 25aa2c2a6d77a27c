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

// A form marked data-upload-progress (the identity documents) is sent with XMLHttpRequest so
// that its <progress data-upload-bar> shows how much has gone up. The server answers as it does
// for the plain form: a redirect (followed here, then the browser goes to where it led) or the
// form again with the refusal, whose <main> replaces this one. Without JavaScript the form
// posts as usual.
(function uploadProgress() {
  function bind() {
    var form = document.querySelector("form[data-upload-progress]");
    if (!form || !window.XMLHttpRequest || !window.FormData) {
      return;
    }
    var bar = form.querySelector("progress[data-upload-bar]");
    var status = form.querySelector("[data-upload-status]");
    var button = form.querySelector("button[type=submit]");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var request = new XMLHttpRequest();
      request.open("POST", form.action);
      request.upload.addEventListener("progress", function (progress) {
        if (bar && progress.lengthComputable) {
          bar.max = progress.total;
          bar.value = progress.loaded;
          bar.textContent = Math.round((100 * progress.loaded) / progress.total) + "%";
        }
      });
      request.addEventListener("load", function () {
        if (request.status < 400 && request.responseURL) {
          location.assign(request.responseURL);
          return;
        }
        var next = new DOMParser().parseFromString(request.responseText, "text/html");
        var main = next.querySelector("main");
        var here = document.querySelector("main");
        if (main && here) {
          here.replaceWith(main);
          bind();
        }
      });
      request.addEventListener("error", function () {
        form.submit(); // the network failed: let the browser try and show what happens
      });
      if (bar) {
        bar.hidden = false;
        bar.value = 0;
      }
      if (status) {
        status.hidden = false;
      }
      if (button) {
        button.disabled = true;
      }
      request.send(new FormData(form));
    });
  }
  bind();
})();

// A quote's countdown (the Lite convert screen): an element with data-quote-seconds (the seconds
// the server says it still holds, so the phone's clock plays no part) shows the seconds left in
// its [data-seconds-left]; at zero it fires "quote-expired", which htmx answers with a new quote
// in its place. Without JavaScript the countdown stands still and a late "Convert" gets a new
// quote from the server instead.
(function quoteCountdowns() {
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-quote-seconds]").forEach(function (card) {
      if (!card.dataset.deadline) {
        card.dataset.deadline = String(now + Number(card.dataset.quoteSeconds) * 1000);
      }
      var left = Math.max(0, Math.ceil((Number(card.dataset.deadline) - now) / 1000));
      card.querySelectorAll("[data-seconds-left]").forEach(function (shown) {
        if (shown.textContent !== String(left)) {
          shown.textContent = String(left);
        }
      });
      if (left === 0 && !card.dataset.expired) {
        card.dataset.expired = "1";
        card.dispatchEvent(new CustomEvent("quote-expired"));
      }
    });
  }
  window.setInterval(tick, 250);
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

// The home screen's countdown to each unlock of money locked after a purchase (T+N, R-TN-3):
// the page shows the hours and minutes left when it was made; this keeps them running.
(function unlockCountdowns() {
  function tick() {
    var now = Date.now();
    document.querySelectorAll(".countdown[data-unlocks-at]").forEach(function (countdown) {
      var left = Math.max(Math.ceil((Date.parse(countdown.dataset.unlocksAt) - now) / 60000), 0);
      var hours = countdown.querySelector("[data-part=hours]");
      var minutes = countdown.querySelector("[data-part=minutes]");
      if (hours && minutes) {
        hours.textContent = String(Math.floor(left / 60));
        minutes.textContent = String(left % 60);
      }
    });
  }
  tick();
  window.setInterval(tick, 15000);
  document.addEventListener("htmx:afterSwap", tick);
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

// The institutional form's member rows (form[data-members-max]): "Add a member" appends a copy
// of the <template data-member-template> row, its names and ids numbered after the highest
// row; "Remove this member" takes a row away (one row always stays). The rows are numbered
// again on screen in their order, as the server numbers them. Without JavaScript the add link
// opens the form with one row more and the remove buttons stay hidden. Listening on the
// document keeps working after uploadProgress replaced <main> with a refusal.
(function memberRows() {
  function rowsOf(form) {
    return form.querySelectorAll("[data-member-rows] [data-member]");
  }
  function renumber(form) {
    var rows = rowsOf(form);
    rows.forEach(function (row, index) {
      var number = row.querySelector("[data-member-number]");
      if (number) {
        number.textContent = String(index + 1);
      }
      var remove = row.querySelector("[data-remove-member]");
      if (remove) {
        remove.hidden = rows.length < 2;
      }
    });
    var add = form.querySelector("[data-add-member]");
    if (add) {
      add.hidden = rows.length >= Number(form.getAttribute("data-members-max") || "12");
    }
  }
  function nextIndex(form) {
    var highest = 0;
    rowsOf(form).forEach(function (row) {
      row.querySelectorAll("[name^='members-']").forEach(function (field) {
        var found = /^members-(\d+)-/.exec(field.name);
        if (found) {
          highest = Math.max(highest, Number(found[1]));
        }
      });
    });
    return highest + 1;
  }
  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    var form = target && target.closest("form[data-members-max]");
    if (!form) {
      return;
    }
    if (target.closest("[data-add-member]")) {
      event.preventDefault();
      var template = form.querySelector("template[data-member-template]");
      var rows = form.querySelector("[data-member-rows]");
      if (!template || !rows) {
        return;
      }
      var index = String(nextIndex(form));
      var row = template.content.firstElementChild.cloneNode(true);
      row.querySelectorAll("[id], [name], [for]").forEach(function (element) {
        ["id", "name", "for"].forEach(function (attribute) {
          var value = element.getAttribute(attribute);
          if (value) {
            element.setAttribute(attribute, value.replace("__i__", index));
          }
        });
      });
      rows.appendChild(row);
      renumber(form);
      var first = row.querySelector("select, input");
      if (first) {
        first.focus();
      }
      return;
    }
    var remove = target.closest("[data-remove-member]");
    if (remove) {
      var member = remove.closest("[data-member]");
      if (member && rowsOf(form).length > 1) {
        member.remove();
        renumber(form);
      }
    }
  });
  function start() {
    document.querySelectorAll("form[data-members-max]").forEach(renumber);
  }
  start();
  new MutationObserver(start).observe(document.body, { childList: true });
})();
