// Strongroom Lite: payment codes computed on this device (R-CODE-1, docs/payment-codes.md), so
// the pay screen works offline. "Keep codes on this device" registers a device for this
// browser; its answer carries the device's secret once in #paycode-device (data attributes,
// no inline script: the CSP refuses those), which this script moves into localStorage and
// removes from the page. The offline page (precached by the service worker) then shows the
// current code as a QR code (qrcode-generator), a Code 128 barcode and digits, computed with
// Web Crypto (HMAC-SHA256), and renews it when the next time step begins. Signing out forgets
// the device here (the server keeps it until it is revoked).
"use strict";

var StrongroomPaycode = (function () {
  var STORE = "strongroom.paycode.v1";
  var PATTERNS = ["212222", "222122", "222221", "121223", "121322", "131222", "122213", "122312", "132212", "221213", "221312", "231212", "112232", "122132", "122231", "113222", "123122", "123221", "223211", "221132", "221231", "213212", "223112", "312131", "311222", "321122", "321221", "312212", "322112", "322211", "212123", "212321", "232121", "111323", "131123", "131321", "112313", "132113", "132311", "211313", "231113", "231311", "112133", "112331", "132131", "113123", "113321", "133121", "313121", "211331", "231131", "213113", "213311", "213131", "311123", "311321", "331121", "312113", "312311", "332111", "314111", "221411", "431111", "111224", "111422", "121124", "121421", "141122", "141221", "112214", "112412", "122114", "122411", "142112", "142211", "241211", "221114", "413111", "241112", "134111", "111242", "121142", "121241", "114212", "124112", "124211", "411212", "421112", "421211", "212141", "214121", "412121", "111143", "111341", "131141", "114113", "114311", "411113", "411311", "113141", "114131", "311141", "411131", "211412", "211214", "211232", "2331112"];
  var BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

  function base32(text) {
    var bits = 0, value = 0, out = [];
    for (var i = 0; i < text.length; i += 1) {
      var index = BASE32.indexOf(text.charAt(i).toUpperCase());
      if (index < 0) { throw new Error("not base32"); }
      value = (value << 5) | index;
      bits += 5;
      if (bits >= 8) {
        out.push((value >>> (bits - 8)) & 0xff);
        bits -= 8;
      }
    }
    return new Uint8Array(out);
  }

  function counter(step) {
    var bytes = new Uint8Array(8);
    var high = Math.floor(step / 4294967296), low = step >>> 0;
    for (var i = 0; i < 4; i += 1) {
      bytes[3 - i] = (high >>> (8 * i)) & 0xff;
      bytes[7 - i] = (low >>> (8 * i)) & 0xff;
    }
    return bytes;
  }

  // The 24-digit code of a device at a time step: issuer (8) + locator (7) + OTP (9).
  function code(issuer, locator, secret, step) {
    return crypto.subtle.importKey("raw", base32(secret), { name: "HMAC", hash: "SHA-256" },
      false, ["sign"])
      .then(function (key) { return crypto.subtle.sign("HMAC", key, counter(step)); })
      .then(function (signed) {
        var mac = new Uint8Array(signed);
        var offset = mac[31] & 0x0f;
        var value = 0n;
        for (var i = 0; i < 8; i += 1) { value = (value << 8n) | BigInt(mac[offset + i]); }
        value &= 0x7fffffffffffffffn;
        var otp = (value % 1000000000n).toString().padStart(9, "0");
        return issuer + locator + otp;
      });
  }

  function svgUri(svg) {
    return "data:image/svg+xml;base64," + btoa(svg);
  }

  // Code 128, code set C (an even number of digits), as web/code128.py draws it.
  function barcode(digits) {
    var values = [105];
    for (var i = 0; i < digits.length; i += 2) { values.push(parseInt(digits.substr(i, 2), 10)); }
    var check = values[0];
    for (var j = 1; j < values.length; j += 1) { check += j * values[j]; }
    values.push(check % 103, 106);
    var x = 10, rects = "";
    values.forEach(function (symbol) {
      var widths = PATTERNS[symbol];
      for (var k = 0; k < widths.length; k += 1) {
        var width = parseInt(widths.charAt(k), 10);
        if (k % 2 === 0) {
          rects += '<rect x="' + x + '" y="0" width="' + width + '" height="50"/>';
        }
        x += width;
      }
    });
    var total = x + 10;
    return svgUri('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ' + total + ' 50" width="' +
      total * 2 + '" height="100" shape-rendering="crispEdges"><rect width="' + total +
      '" height="50" fill="#fff"/><g fill="#000">' + rects + "</g></svg>");
  }

  function qr(text) {
    var made = qrcode(0, "M");
    made.addData(text);
    made.make();
    var count = made.getModuleCount(), size = count + 8, path = "";
    for (var r = 0; r < count; r += 1) {
      for (var c = 0; c < count; c += 1) {
        if (made.isDark(r, c)) { path += "M" + (c + 4) + " " + (r + 4) + "h1v1h-1z"; }
      }
    }
    return svgUri('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ' + size + " " + size +
      '" width="' + size * 6 + '" height="' + size * 6 + '" shape-rendering="crispEdges"><rect width="' +
      size + '" height="' + size + '" fill="#fff"/><path fill="#000" d="' + path + '"/></svg>');
  }

  function stored() {
    try {
      var device = JSON.parse(localStorage.getItem(STORE) || "null");
      return device && device.secret ? device : null;
    } catch (error) {
      return null;
    }
  }

  function keep() {
    var element = document.getElementById("paycode-device");
    if (!element) { return; }
    var data = element.dataset;
    localStorage.setItem(STORE, JSON.stringify({
      device_id: data.deviceId, secret: data.secret, locator: data.locator,
      issuer_id: data.issuerId, step_s: parseInt(data.stepS, 10)
    }));
    element.remove();
  }

  function show(device) {
    var box = document.getElementById("offline-paycode");
    if (!box) { return; }
    var step = Math.floor(Date.now() / 1000 / device.step_s);
    code(device.issuer_id, device.locator, device.secret, step).then(function (text) {
      document.getElementById("offline-qr").src = qr(text);
      document.getElementById("offline-barcode").src = barcode(text);
      document.getElementById("offline-digits").textContent = text.replace(/(\d{4})(?=\d)/g, "$1 ");
      box.dataset.code = text;
      box.hidden = false;
      var next = (step + 1) * device.step_s * 1000 - Date.now() + 500;
      window.setTimeout(function () { show(device); }, Math.max(next, 500));
    });
  }

  function start() {
    keep();
    toggle();
    document.querySelectorAll('form[action="/app/signout"]').forEach(function (form) {
      form.addEventListener("submit", function () { localStorage.removeItem(STORE); });
    });
    document.body.addEventListener("htmx:afterSwap", function () { keep(); toggle(); });
    var device = stored();
    if (device) { show(device); }
  }

  function toggle() {
    var device = stored();
    document.querySelectorAll("[data-paycode-stored]").forEach(function (element) {
      element.hidden = !device;
    });
    document.querySelectorAll("[data-paycode-not-stored]").forEach(function (element) {
      element.hidden = !!device;
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
  return { code: code, barcode: barcode, stored: stored };
})();
