// Live pages: a page whose <main> names an event path in data-live listens to
// /sse/listen/PATH and, when something under it changes, fetches itself again and swaps
// its <main>: at most once a second, except that a build's start and end are fetched at
// once (a finished build's colour is what a visitor waits for), one fetch at a time.
// Without JavaScript the pages are the same, only still.
"use strict";
(function () {
  var main = document.querySelector("main[data-live]");
  if (!main || !window.EventSource) return;
  var path = main.getAttribute("data-live");
  var timer = null;
  var inFlight = false;
  var again = false;
  var last = 0;
  var startOrEnd = /(^|\/)builds\/\d+\/(new|finished)$/;
  function refresh() {
    if (timer) { clearTimeout(timer); timer = null; }
    if (inFlight) { again = true; return; }
    inFlight = true;
    last = Date.now();
    fetch(window.location.href, { headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var content = fresh.querySelector("main");
        if (!content) return;
        document.querySelector("main").innerHTML = content.innerHTML;
        document.title = fresh.title;
        if (main.getAttribute("data-follow")) window.scrollTo(0, document.body.scrollHeight);
      })
      .catch(function () {})
      .then(function () {
        inFlight = false;
        if (again) { again = false; refresh(); }
      });
  }
  function schedule(urgent) {
    if (urgent) { refresh(); return; }
    if (!timer) timer = setTimeout(refresh, Math.max(0, 1000 - (Date.now() - last)));
  }
  var source = new EventSource("/sse/listen/" + path);
  source.addEventListener("event", function (event) {
    var key = "";
    try { key = JSON.parse(event.data).key || ""; } catch (e) {}
    schedule(startOrEnd.test(key));
  });
  source.addEventListener("lagged", function () { schedule(false); });
  if (main.getAttribute("data-follow")) window.scrollTo(0, document.body.scrollHeight);
})();
