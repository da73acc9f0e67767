// The index's GPU filter: hides the rows of other GPU models. Loaded from the site's own
// folder (the pages' CSP allows no inline script); without it the GPU pages do the same.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("filter");
  var select = document.getElementById("gpu-filter");
  if (!form || !select) {
    return;
  }
  function apply() {
    var gpu = select.value;
    var rows = document.querySelectorAll("tr[data-gpu]");
    for (var i = 0; i < rows.length; i++) {
      rows[i].hidden = gpu !== "" && rows[i].getAttribute("data-gpu") !== gpu;
    }
  }
  form.hidden = false;
  form.addEventListener("submit", function (event) { event.preventDefault(); });
  select.addEventListener("change", apply);
  apply();
});
