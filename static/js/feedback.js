// Feedback where the eye is (issue 14 item 4), for every page, in one place:
// - htmx requests disable the control that sent them and mark it busy (the global hx-disabled-elt);
// - an htmx response may announce a message with `HX-Trigger: {"flash": {"message", "category"}}`;
//   it lands in the one toast region (#toasts, role=status) that server-side flashes fill too;
// - a failed form's error summary takes focus, so a screen reader reads it and the eye finds it;
// - copy buttons copy the value of the field they name (the field itself is the no-JS fallback).
(function () {
  "use strict";

  function sender(evt) {
    var elt = evt.detail && evt.detail.elt;
    if (!elt) { return null; }
    if (elt.tagName === "FORM") {
      // Only a submit sends the form's button; an autosave (input, change, a timer) leaves it alone.
      var trigger = evt.detail.requestConfig && evt.detail.requestConfig.triggeringEvent;
      if (!trigger || trigger.type !== "submit") { return null; }
      return trigger.submitter || elt.querySelector("[type=submit]");
    }
    return elt.matches("button, input[type=submit]") ? elt : null;
  }

  // Busy, not `disabled`: a disabled button loses focus, and htmx can only put focus back on the
  // swapped-in button when it still had it. aria-disabled tells assistive technology; the capture
  // listeners below swallow a second click or Enter while the first request is in flight.
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var button = sender(evt);
    // Buttons that already disable themselves (hx-disabled-elt) or want to stay live keep their way.
    if (!button || button.disabled || button.closest("[hx-disabled-elt], [data-stay-enabled]")) { return; }
    button.setAttribute("aria-disabled", "true");
    button.setAttribute("aria-busy", "true");
    button.classList.add("is-busy");
    evt.detail.elt.addEventListener("htmx:afterRequest", function done() {
      evt.detail.elt.removeEventListener("htmx:afterRequest", done);
      button.removeAttribute("aria-disabled");
      button.removeAttribute("aria-busy");
      button.classList.remove("is-busy");
    });
  });

  function busy(evt) {
    var target = evt.type === "submit" ? (evt.submitter || evt.target.querySelector("[aria-busy=true]")) : evt.target;
    if (target && target.closest && target.closest("[aria-busy=true]")) {
      evt.preventDefault();
      evt.stopImmediatePropagation();
    }
  }
  document.addEventListener("click", busy, true);
  document.addEventListener("submit", busy, true);

  function toast(message, category) {
    var region = document.getElementById("toasts");
    if (!region || !message) { return; }
    var p = document.createElement("p");
    p.className = "flash flash-" + (category || "success");
    p.textContent = message;
    region.replaceChildren(p);  // one message per action: the newest replaces the last
  }

  document.body.addEventListener("flash", function (evt) {
    var d = evt.detail || {};
    toast(d.message || d.value, d.category);
  });

  function focusSummary(root) {
    var summary = (root || document).querySelector(".error-summary");
    if (summary) { summary.focus(); }
  }
  focusSummary(document);
  document.body.addEventListener("htmx:afterSettle", function (evt) { focusSummary(evt.detail.elt); });

  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest("[data-copy]");
    if (!button) { return; }
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) { return; }
    var text = field.value !== undefined ? field.value : field.textContent;
    var said = function () {
      var before = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = before; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(said, function () { field.select && field.select(); });
    } else if (field.select) {  // plain http: select it, so Ctrl+C is one step away
      field.select();
      document.execCommand && document.execCommand("copy") && said();
    }
  });
  // Copy buttons only make sense with JavaScript: the readonly field is the fallback without it.
  document.querySelectorAll("[data-copy][hidden]").forEach(function (b) { b.hidden = false; });
})();
