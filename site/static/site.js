// Search and filters of the rule index: every rule row carries its kind, review state,
// value sets, codes and searchable text as data attributes; nothing is fetched.
(function () {
  "use strict";
  var table = document.getElementById("rules");
  if (!table) { return; }
  var rows = Array.prototype.slice.call(table.querySelectorAll("tbody tr"));
  var q = document.getElementById("q");
  var kind = document.getElementById("f-kind");
  var state = document.getElementById("f-state");
  var valueset = document.getElementById("f-valueset");
  var code = document.getElementById("f-code");
  var shown = document.getElementById("shown");
  var template = shown.getAttribute("data-template");

  function apply() {
    var words = q.value.toLowerCase().split(/\s+/).filter(Boolean);
    var wantedCode = code.value.trim();
    var count = 0;
    rows.forEach(function (row) {
      var d = row.dataset;
      var ok = (!kind.value || d.kind === kind.value) &&
        (!state.value || d.state === state.value) &&
        (!valueset.value || d.valuesets.indexOf(" " + valueset.value + " ") >= 0) &&
        (!wantedCode || d.codes.indexOf(" " + wantedCode + " ") >= 0) &&
        words.every(function (w) {
          return d.text.indexOf(w) >= 0 || d.codes.indexOf(w) >= 0;
        });
      row.classList.toggle("hidden", !ok);
      if (ok) { count += 1; }
    });
    shown.textContent = template.replace("{shown}", count).replace("{total}", rows.length);
  }
  [q, code].forEach(function (el) { el.addEventListener("input", apply); });
  [kind, state, valueset].forEach(function (el) { el.addEventListener("change", apply); });
  var params = new URLSearchParams(window.location.search);
  if (params.get("q")) { q.value = params.get("q"); }
  apply();
}());
