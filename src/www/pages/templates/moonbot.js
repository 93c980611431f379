// Live pages: a page whose <main> names an event path in data-live listens to
// /sse/listen/PATH and, when something under it changes, fetches itself again and swaps
// its <main>, at most once a second. Without JavaScript the pages are the same, only still.
"use strict";
(function () {
  var main = document.querySelector("main[data-live]");
  if (!main || !window.EventSource) return;
  var path = main.getAttribute("data-live");
  var pending = false;
  var last = 0;
  function refresh() {
    pending = false;
    last = Date.now();
    fetch(window.location.href, { headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
        if (!fresh) return;
        var current = document.querySelector("main");
        current.innerHTML = fresh.innerHTML;
        document.title = new DOMParser().parseFromString(html, "text/html").title;
        if (main.getAttribute("data-follow")) window.scrollTo(0, document.body.scrollHeight);
      })
      .catch(function () {});
  }
  function schedule() {
    if (pending) return;
    pending = true;
    setTimeout(refresh, Math.max(0, 1000 - (Date.now() - last)));
  }
  var source = new EventSource("/sse/listen/" + path);
  source.addEventListener("event", schedule);
  source.addEventListener("lagged", schedule);
  if (main.getAttribute("data-follow")) window.scrollTo(0, document.body.scrollHeight);
})();
