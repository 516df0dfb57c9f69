/* Rose Ash embeds: <rose-ash-embed src="https://HOST/embed/NAME">fallback link</rose-ash-embed>
 * <script src="https://HOST/embed/loader.js" defer></script>
 * Fetches the embed without credentials or custom headers (a simple CORS request, no
 * preflight), renders it into a shadow root, and leaves the element's children (the no-JS
 * link) in place if anything fails. It only fetches /embed/ URLs on its own origin. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.customElements || !window.fetch) { return; }
  var origin = new URL(script.src, document.baseURI).origin;
  var STYLE = ":host{display:block;font:15px/1.5 system-ui,sans-serif;color:#2b2024}" +
    "a{color:#a3324d}ul{padding-left:1.2em;margin:.4em 0}h2{font-size:1.1em;margin:.2em 0}" +
    ".muted{color:#6b5d61}.panel{border:1px solid #e8dde0;border-radius:8px;padding:.8em 1em}";

  // A constructed stylesheet, not a <style> element: host pages (and ours) whose CSP allows no
  // inline styles still style the embed. Older browsers fall back to the <style> element.
  var sheet = null;
  try { sheet = new CSSStyleSheet(); sheet.replaceSync(STYLE); } catch (e) { sheet = null; }

  function embedUrl(src) {
    var url;
    try { url = new URL(src, origin); } catch (e) { return null; }
    if (url.origin !== origin || url.pathname.indexOf("/embed/") !== 0) { return null; }
    return url.href;
  }

  function RoseAshEmbed() { return Reflect.construct(HTMLElement, [], RoseAshEmbed); }
  RoseAshEmbed.prototype = Object.create(HTMLElement.prototype);
  RoseAshEmbed.prototype.constructor = RoseAshEmbed;
  RoseAshEmbed.prototype.connectedCallback = function () {
    var el = this;
    var href = embedUrl(el.getAttribute("src") || "");
    if (!href || el.getAttribute("data-loaded")) { return; }
    el.setAttribute("data-loaded", "loading");
    fetch(href, { credentials: "omit", mode: "cors" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (html) {
        var root = el.shadowRoot || el.attachShadow({ mode: "open" });
        if (sheet && "adoptedStyleSheets" in root) {
          root.innerHTML = html;
          root.adoptedStyleSheets = [sheet];
        } else {
          root.innerHTML = "<style>" + STYLE + "</style>" + html;
        }
        el.setAttribute("data-loaded", "true");
      })
      .catch(function () { el.setAttribute("data-loaded", "failed"); });
  };
  Object.setPrototypeOf(RoseAshEmbed, HTMLElement);
  if (!customElements.get("rose-ash-embed")) { customElements.define("rose-ash-embed", RoseAshEmbed); }
})();
