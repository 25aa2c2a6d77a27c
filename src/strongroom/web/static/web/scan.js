// Scan a shop's QR code on /app/pay/emv (issue #13): where the browser has BarcodeDetector and
// a camera (getUserMedia), "Scan with the camera" shows the camera's picture, reads QR codes in
// it a few times a second and, on the first one, puts its text in the form and sends it (the
// server reads and checks it; nothing is paid before the confirmation). Elsewhere the scanner
// stays hidden and the text field is the way in. The stream is stopped as soon as a code is
// read or the page is left. No library: the browser does the decoding.
"use strict";

(function scanner() {
  var box = document.querySelector("[data-scanner]");
  var form = document.getElementById("emv-form");
  if (!box || !form || !("BarcodeDetector" in window) || !navigator.mediaDevices ||
      !navigator.mediaDevices.getUserMedia) {
    return;
  }
  var video = box.querySelector("[data-scan-video]");
  var status = box.querySelector("[data-scan-status]");
  var start = box.querySelector("[data-scan-start]");
  var field = form.querySelector("textarea[name=payload]");
  var stream = null;
  var INTERVAL_MS = 250;
  var detector;
  try {
    detector = new window.BarcodeDetector({ formats: ["qr_code"] });
  } catch (error) {
    return; // no QR support in this browser's detector
  }
  box.hidden = false;

  function say(which) {
    status.textContent = status.getAttribute(which);
    status.hidden = false;
  }

  function stop() {
    if (stream) {
      stream.getTracks().forEach(function (track) { track.stop(); });
      stream = null;
    }
    video.hidden = true;
  }

  function look() {
    if (!stream) {
      return;
    }
    detector.detect(video).then(function (codes) {
      var found = codes.length ? codes[0].rawValue : "";
      if (found) {
        stop();
        field.value = found.trim();
        form.requestSubmit();
        return;
      }
      window.setTimeout(look, INTERVAL_MS);
    }, function () {
      window.setTimeout(look, INTERVAL_MS);
    });
  }

  start.addEventListener("click", function () {
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false })
      .then(function (opened) {
        stream = opened;
        video.srcObject = opened;
        video.hidden = false;
        say("data-scanning");
        return video.play().then(look);
      })
      .catch(function () {
        stop();
        say("data-failed");
      });
  });
  window.addEventListener("pagehide", stop);
})();
