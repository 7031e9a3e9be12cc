/* casetrail pages: progressive enhancement only. Every page works without this script.
 * - form[data-enhance]: submitted in the background; a 422 answer's errors
 *   ([data-form-errors]) replace the form's own, and the fields named are marked, so what was
 *   typed stays in the page (the draft is never stored anywhere else); a 204 goes to its
 *   X-Casetrail-Location when that is a path of this site (else to "/"); a session ended
 *   (the answer is the sign-in page) or a stale form token (403 csrf-failed) is said in the
 *   form's summary, the draft kept, and the next submission first renews the token, for the
 *   same person only (GET /v1/sessions/current); any other answer replaces the page.
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

  // The person the page was made for (base.html): a form's token is renewed only for them.
  function pageUser() {
    var who = document.querySelector("[data-user]");
    return who ? who.getAttribute("data-user") : null;
  }

  // A message in the form's own summary (the draft stays as typed), with the sign-in page
  // offered in a new window when `signIn`.
  function say(form, text, signIn) {
    var mine = form.querySelector("[data-form-errors]");
    if (!mine) { return false; }
    mine.className = "alert";
    mine.setAttribute("role", "alert");
    mine.textContent = "";
    var line = document.createElement("p");
    line.textContent = text;
    if (signIn) {
      var link = document.createElement("a");
      link.href = "/signin";
      link.target = "_blank";
      link.rel = "noopener";
      link.textContent = "在新窗口重新登录";
      line.appendChild(document.createTextNode(" "));
      line.appendChild(link);
      line.appendChild(document.createTextNode("，然后回到本页再次提交。"));
    }
    mine.appendChild(line);
    mine.setAttribute("tabindex", "-1");
    mine.focus();
    return true;
  }

  // After the session ended or changed, the page's token is the old session's: the current
  // one is asked for (the same person's only) before the draft is sent again.
  function renewToken() {
    return fetch("/v1/sessions/current", {
      credentials: "same-origin",
      headers: { "Accept": "application/json" },
    }).then(function (answer) {
      return answer.ok ? answer.json() : null;
    }).then(function (found) {
      if (!found || !found.session || found.user_id !== pageUser()) { return false; }
      document.querySelectorAll("input[name=csrf_token]").forEach(function (el) {
        el.value = found.session.csrf_token;
      });
      return true;
    });
  }

  var EXPIRED = "内容没有提交：登录已过期或页面已过期。已填写的内容仍在本页，请勿关闭。";

  function answered(form, answer) {
    var go = answer.headers.get("X-Casetrail-Location");
    if (answer.status === 204) {
      window.location.assign(localPath(go));
      return null;
    }
    var signedOut = answer.redirected && new URL(answer.url).pathname === "/signin";
    return answer.text().then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      var problem = doc.querySelector("[data-problem]");
      var stale = problem && problem.getAttribute("data-problem") === "csrf-failed";
      if ((signedOut || stale) && say(form, EXPIRED, true)) {
        form.setAttribute("data-renew", "");
        return;
      }
      if (answer.status !== 422) { replacePage(html); return; }
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
  }

  function submit(form, event) {
    event.preventDefault();
    var button = form.querySelector("button[type=submit]");
    if (button) { button.disabled = true; }
    var ready = form.hasAttribute("data-renew") ? renewToken() : Promise.resolve(true);
    ready.then(function (renewed) {
      if (!renewed) { say(form, EXPIRED, true); return null; }
      form.removeAttribute("data-renew");
      // The attribute, not `form.action`: a control named "action" would shadow the property.
      return fetch(form.getAttribute("action") || window.location.pathname, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        credentials: "same-origin",
        headers: { "X-Casetrail-Form": "1", "Accept": "text/html" },
      }).then(function (answer) { return answered(form, answer); });
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
    if (form.hasAttribute("data-enhance") && (form.getAttribute("method") || "").toLowerCase() === "post") {
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
