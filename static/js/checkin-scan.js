// The door page's camera (issue 18 item 5): an enhancement of the typed-code form, which works
// alone without JavaScript, without a camera or when the camera is refused.
//
// - Reading: the browser's own BarcodeDetector (Shape Detection API) when it reads QR codes; else
//   the vendored reader (static/vendor/qr-0.7.0, loaded only then), fed frames from a canvas.
// - Sending: the code goes through the same form (its CSRF token and one-use nonce), by fetch,
//   so the camera keeps running; the answer, the counts and the next nonce are taken from the
//   page the server sends back, exactly what a typed code shows.
// - A code that stays in view is sent once: it is sent again only after it has been out of view
//   for a moment, so a ticket held up is one check-in and a real second scan is refused.
// getUserMedia needs a secure context (https, or http on localhost) and the page's
// Permissions-Policy allows the camera for this page only (domains/events/booking_web.py).
(function () {
  "use strict";

  var VENDORED = "/static/vendor/qr-0.7.0/decode.js";
  var FORGET_MS = 1500;  // out of view this long: the same code counts as a new scan
  var FRAME_MS = 200;    // a frame read every so often is plenty at a door, and spares the battery

  var root = document.querySelector("[data-checkin-scan]");
  if (!root) { return; }
  var form = document.querySelector("form.checkin-form");
  var button = root.querySelector("button.checkin-camera");
  var video = root.querySelector("video");
  var status = root.querySelector(".checkin-scan-status");
  if (!form || !button || !video || !status) { return; }
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    root.hidden = false;
    button.hidden = true;
    status.textContent = "The camera needs a secure (https) page: type the code below.";
    return;
  }
  root.hidden = false;

  var lastCode = null;
  var lastSeen = 0;
  var busy = false;
  var stream = null;

  function nativeReader() {
    if (!("BarcodeDetector" in window)) { return Promise.resolve(null); }
    return window.BarcodeDetector.getSupportedFormats().then(function (formats) {
      if (formats.indexOf("qr_code") < 0) { return null; }
      var detector = new window.BarcodeDetector({ formats: ["qr_code"] });
      return function (source) {
        return detector.detect(source).then(function (found) { return found.length ? found[0].rawValue : null; });
      };
    }, function () { return null; });
  }

  function vendoredReader() {
    return import(VENDORED).then(function (qr) {
      var canvas = document.createElement("canvas");
      var context = canvas.getContext("2d", { willReadFrequently: true });
      return function (source) {
        var width = source.videoWidth, height = source.videoHeight;
        if (!width || !height) { return Promise.resolve(null); }
        canvas.width = width;
        canvas.height = height;
        context.drawImage(source, 0, 0, width, height);
        try {
          return Promise.resolve(qr.decodeQR(context.getImageData(0, 0, width, height)));
        } catch (e) {
          return Promise.resolve(null);  // no code in this frame
        }
      };
    });
  }

  function reader() {
    return nativeReader().then(function (read) { return read || vendoredReader(); });
  }

  // The server's page for this code: swap in its answer, counts and fresh nonce.
  function send(code) {
    busy = true;
    form.querySelector("input[name=secret]").value = code;
    status.textContent = "Checking…";
    return fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin",
                                headers: { "Accept": "text/html" } })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        ["[data-checkin-answer]", "[data-checkin-counts]"].forEach(function (selector) {
          var fresh = page.querySelector(selector);
          var here = document.querySelector(selector);
          // The children, not the element: the answer's box is a live region that stays put.
          if (fresh && here) { here.replaceChildren.apply(here, Array.prototype.map.call(fresh.childNodes, function (n) { return document.importNode(n, true); })); }
        });
        var nonce = page.querySelector("form.checkin-form input[name=nonce]");
        if (nonce) { form.querySelector("input[name=nonce]").value = nonce.value; }
        form.querySelector("input[name=secret]").value = "";
        status.textContent = "Scanning: hold the next ticket's code to the camera.";
      }, function () {
        status.textContent = "No answer from the server: check the connection and scan again.";
        lastCode = null;  // nothing was checked in: the same code may be tried again at once
      })
      .then(function () { busy = false; lastSeen = Date.now(); });
  }

  function loop(read) {
    if (!stream) { return; }
    var next = function () { window.setTimeout(function () { loop(read); }, FRAME_MS); };
    if (busy || video.readyState < 2) { next(); return; }
    read(video).then(function (code) {
      var now = Date.now();
      if (code) {
        var repeat = code === lastCode && now - lastSeen < FORGET_MS;
        lastCode = code;
        lastSeen = now;
        if (!repeat) { return send(code); }
      }
      return null;
    }).then(next, next);
  }

  function start() {
    button.disabled = true;
    status.textContent = "Starting the camera…";
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false })
      .then(function (media) {
        stream = media;
        video.srcObject = media;
        video.hidden = false;
        return video.play().then(reader);
      })
      .then(function (read) {
        status.textContent = "Scanning: hold a ticket's code to the camera.";
        root.setAttribute("data-scanning", "true");
        loop(read);
      }, function (error) {
        status.textContent = "No camera (" + (error && error.name ? error.name : "refused") + "): type the code below.";
        button.disabled = false;
        if (stream) { stream.getTracks().forEach(function (t) { t.stop(); }); stream = null; }
      });
  }

  button.addEventListener("click", start);
})();
