/* casetrail pages: progressive enhancement only. Every page works without this script.
 * - form[data-enhance]: submitted in the background; a 422 answer's errors
 *   ([data-form-errors]) replace the form's own, and the fields named are marked, so what was
 *   typed stays in the page (the draft is never stored anywhere else); a 204 goes to its
 *   X-Casetrail-Location when that is a path of this site (else to "/"); any other answer
 *   replaces the page.
 * - form[data-confirm]: asks before submitting.
 * - button[data-print]: prints the page.
 * No inline script anywhere (the Content-Security-Policy forbids it). */
(function () {
  "use strict";

  function markFields(form, summary) {
    form.querySelectorAll("[aria-invalid]").forEach(function (el) {
      el.removeAttribute("aria-invalid");
    });
    if (!summary) { return; }
    summary.querySelectorAll("[data-field]").forEach(function (item) {
      var name = item.getAttribute("data-field");
      form.querySelectorAll("[name]").forEach(function (el) {
        if (el.getAttribute("name") === name) { el.setAttribute("aria-invalid", "true"); }
      });
    });
  }

  // Where a 204 may send the page: a path of this site only. "//host" and "/\host" start
  // with "/" too, but a browser takes them to another site (scheme-relative), as it does
  // once it has dropped a tab or a newline from them.
  function localPath(go) {
    if (!go || /[\u0000-\u001f\u007f]/.test(go) || !/^\/(?![\/\\])/.test(go)) { return "/"; }
    var url = new URL(go, window.location.href);
    if (url.origin !== window.location.origin) { return "/"; }
    return url.pathname + url.search + url.hash;
  }

  function replacePage(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    document.replaceChild(document.adoptNode(doc.documentElement), document.documentElement);
  }

  function submit(form, event) {
    event.preventDefault();
    var button = form.querySelector("button[type=submit]");
    if (button) { button.disabled = true; }
    var body = new URLSearchParams(new FormData(form));
    fetch(form.action, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-Casetrail-Form": "1", "Accept": "text/html" },
    }).then(function (answer) {
      var go = answer.headers.get("X-Casetrail-Location");
      if (answer.status === 204) {
        window.location.assign(localPath(go));
        return null;
      }
      return answer.text().then(function (html) {
        if (answer.status !== 422) { replacePage(html); return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("[data-form-errors]");
        var mine = form.querySelector("[data-form-errors]") ||
          document.querySelector("[data-form-errors]");
        if (fresh && mine) {
          mine.replaceWith(document.adoptNode(fresh));
          markFields(form, fresh);
          fresh.setAttribute("tabindex", "-1");
          fresh.focus();
        } else {
          replacePage(html);
        }
      });
    }).catch(function () {
      var mine = form.querySelector("[data-form-errors]");
      if (mine) { mine.textContent = "网络连接失败，内容未提交，请稍后重试。"; }
    }).finally(function () {
      if (button) { button.disabled = false; }
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) { return; }
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); return; }
    if (form.hasAttribute("data-enhance") && (form.method || "").toLowerCase() === "post") {
      submit(form, event);
    }
  });

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target instanceof Element && target.closest("[data-print]")) {
      event.preventDefault();
      window.print();
    }
  });
})();
