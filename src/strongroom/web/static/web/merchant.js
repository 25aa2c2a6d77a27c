// The merchant portal's behaviour (no inline script: the CSP refuses it).
// - The till (/merchant/pos): after a charge the page carries the sentence to announce
//   (data-announce, in the page's language) and the voice's language (data-voice-lang: zh-HK or
//   en). With the toggle on (remembered in localStorage), it is spoken with speechSynthesis and
//   written into #announced, so the page shows (and a test can read) what was announced.
// - Scanning: where the browser has BarcodeDetector and a camera, "Scan with the camera" reads a
//   QR or Code 128 payment code into the field; typing always works.
(function () {
  "use strict";
  var SPEAK_KEY = "sr-merchant-speak";

  function speakOn() {
    try {
      return window.localStorage.getItem(SPEAK_KEY) !== "off";
    } catch (e) {
      return true;
    }
  }

  function voiceFor(lang) {
    if (!("speechSynthesis" in window)) return null;
    var voices = window.speechSynthesis.getVoices() || [];
    var wanted = lang.toLowerCase();
    var base = wanted.split("-")[0];
    var exact = null;
    var near = null;
    for (var i = 0; i < voices.length; i++) {
      var tag = (voices[i].lang || "").toLowerCase().replace("_", "-");
      if (tag === wanted && !exact) exact = voices[i];
      if (tag.split("-")[0] === base && !near) near = voices[i];
    }
    return exact || near;
  }

  function announce(pos) {
    var paid = pos.querySelector("[data-announce]");
    var shown = document.getElementById("announced");
    if (!paid || !shown) return;
    var text = paid.getAttribute("data-announce");
    var lang = pos.getAttribute("data-voice-lang") || "en";
    if (!speakOn()) {
      shown.setAttribute("data-spoken", "off");
      return;
    }
    shown.textContent = text;
    shown.setAttribute("lang", lang);
    if ("speechSynthesis" in window && "SpeechSynthesisUtterance" in window) {
      var utterance = new window.SpeechSynthesisUtterance(text);
      utterance.lang = lang;
      var voice = voiceFor(lang);
      if (voice) utterance.voice = voice;
      window.speechSynthesis.cancel();
      window.speechSynthesis.speak(utterance);
      shown.setAttribute("data-spoken", "yes");
    } else {
      shown.setAttribute("data-spoken", "unsupported");
    }
  }

  function setUpToggle() {
    var toggle = document.getElementById("speak");
    if (!toggle) return;
    toggle.checked = speakOn();
    toggle.addEventListener("change", function () {
      try {
        window.localStorage.setItem(SPEAK_KEY, toggle.checked ? "on" : "off");
      } catch (e) {
        /* private mode: the toggle lasts for this page only */
      }
    });
  }

  function setUpScan() {
    var button = document.getElementById("scan");
    var video = document.getElementById("scan-video");
    var field = document.getElementById("payment_code");
    if (!button || !video || !field) return;
    if (!("BarcodeDetector" in window) || !navigator.mediaDevices) return;
    button.parentElement.hidden = false;
    var stream = null;
    function stop() {
      if (stream) stream.getTracks().forEach(function (t) { t.stop(); });
      stream = null;
      video.hidden = true;
    }
    button.addEventListener("click", function () {
      var detector = new window.BarcodeDetector({ formats: ["qr_code", "code_128"] });
      navigator.mediaDevices
        .getUserMedia({ video: { facingMode: "environment" } })
        .then(function (got) {
          stream = got;
          video.srcObject = got;
          video.hidden = false;
          return video.play();
        })
        .then(function () {
          function look() {
            if (!stream) return;
            detector.detect(video).then(function (found) {
              for (var i = 0; i < found.length; i++) {
                var digits = (found[i].rawValue || "").replace(/\s+/g, "");
                if (/^[0-9]{16,64}$/.test(digits)) {
                  field.value = digits;
                  stop();
                  var amount = document.getElementById("amount");
                  if (amount) amount.focus();
                  return;
                }
              }
              window.setTimeout(look, 250);
            }, function () { window.setTimeout(look, 500); });
          }
          look();
        })
        .catch(stop);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var pos = document.querySelector(".pos");
    if (!pos) return;
    setUpToggle();
    setUpScan();
    announce(pos);
  });
})();
