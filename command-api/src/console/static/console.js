// The console's live updates: one EventSource per page on /console/events. The server
// sends "hello" with a token of what the overview shows when the stream (re)connects, and
// "changed" with the new token when that changes; elements that show live data re-fetch
// themselves on the "console:refresh" event (hx-trigger="console:refresh from:body").
// The stream is closed on pagehide, so leaving a page aborts nothing, and reopened on
// pageshow (a page restored from the back-forward cache).
(function () {
  "use strict";
  var source = null;

  function refresh() {
    document.body.dispatchEvent(new CustomEvent("console:refresh"));
  }

  // A token is "<data>" or "<data>-<rate>": what the pages show, and this server's command
  // rate, which only the overview shows (a rate-only change refreshes only it).
  function onToken(event) {
    var body = document.body;
    var now = event.data.split("-");
    var before = (body.dataset.liveToken || "").split("-");
    body.dataset.liveToken = event.data;
    if (event.data === "lagged" || before[0] !== now[0]) {
      refresh();
    } else if ((before[1] || "0.0") !== (now[1] || "0.0")) {
      body.dispatchEvent(new CustomEvent("console:rate"));
    }
  }

  function connect() {
    if (source || !window.EventSource || !document.body.hasAttribute("data-live-token")) {
      return;
    }
    source = new EventSource("/console/events");
    // On (re)connect: re-fetch only if something changed since the page was rendered.
    source.addEventListener("hello", onToken);
    source.addEventListener("changed", onToken);
  }

  function disconnect() {
    if (source) {
      source.close();
      source = null;
    }
  }

  window.addEventListener("pageshow", connect);
  window.addEventListener("pagehide", disconnect);

  // A select marked data-autosubmit submits its form when changed (the form also has a
  // submit button, for keyboards and pages without JavaScript).
  document.addEventListener("change", function (e) {
    var el = e.target;
    if (el && el.matches && el.matches("select[data-autosubmit]") && el.form) {
      el.form.requestSubmit();
    }
  });
})();
