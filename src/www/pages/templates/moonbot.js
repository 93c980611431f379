// Live pages: a page whose <main> names an event path in data-live listens to
// /sse/listen/PATH and, when something under it changes, fetches itself again and swaps
// its <main>: at most once a second, except that a build's start (and the end of a build
// the page does not show yet) is fetched at once, one fetch at a time. A finished build's
// colour is what a visitor waits for, so its links (data-buildid) take their result's class
// as soon as the event arrives; a page fetched while builds ended gets their colours again.
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
  var buildEnd = /(^|\/)builds\/\d+\/finished$/;
  var resultNames = ["success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"];
  var stateClasses = ["running", "pending"].concat(resultNames);
  // Builds that finished while the current fetch was under way: buildid to result class.
  var endedDuringFetch = {};
  // Whether the page showed the build.
  function recolour(buildid, result) {
    var links = document.querySelectorAll("[data-buildid='" + buildid + "']");
    for (var i = 0; i < links.length; i++) {
      stateClasses.forEach(function (name) { links[i].classList.remove(name); });
      links[i].classList.add(result);
    }
    return links.length > 0;
  }
  function refresh() {
    if (timer) { clearTimeout(timer); timer = null; }
    if (inFlight) { again = true; return; }
    inFlight = true;
    endedDuringFetch = {};
    last = Date.now();
    fetch(window.location.href, { headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var content = fresh.querySelector("main");
        if (!content) return;
        // The parsed nodes move over as they are: copying them as HTML text would parse the
        // page a second time, and events wait for the main thread meanwhile.
        var current = document.querySelector("main");
        current.replaceChildren.apply(current, Array.prototype.slice.call(content.childNodes));
        document.title = fresh.title;
        Object.keys(endedDuringFetch).forEach(function (id) { recolour(id, endedDuringFetch[id]); });
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
    var data = {};
    try { data = JSON.parse(event.data) || {}; } catch (e) {}
    var key = data.key || "";
    // Some keys name a build by its number under its builder: the message names its id.
    var build = buildEnd.test(key) && data.message ? data.message : null;
    var result = build ? resultNames[build.results] : null;
    var shown = false;
    if (result) {
      shown = recolour(build.buildid, result);
      if (inFlight) endedDuringFetch[build.buildid] = result;
    }
    // A build already recoloured can wait for the next throttled fetch: a burst of ends
    // then costs one fetch, not one each, and the colours are on screen meanwhile.
    schedule(startOrEnd.test(key) && !shown);
  });
  source.addEventListener("lagged", function () { schedule(false); });
  if (main.getAttribute("data-follow")) window.scrollTo(0, document.body.scrollHeight);
})();
