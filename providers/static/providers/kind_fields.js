/* The provider form shows only the selected kind's fields.
 * Each option field carries data-provider-kinds="kind kind ..." (providers.forms); its row is
 * hidden while #id_kind names another kind, and a fieldset whose rows are all hidden is hidden
 * too. Without JavaScript every field stays visible (the server validates per kind anyway). */
(function () {
  "use strict";
  function apply() {
    var select = document.getElementById("id_kind");
    if (!select) { return; }
    var kind = select.value;
    document.querySelectorAll("[data-provider-kinds]").forEach(function (input) {
      var row = input.closest(".form-row") || input.parentElement;
      var kinds = input.getAttribute("data-provider-kinds").split(" ");
      row.hidden = kind !== "" && kinds.indexOf(kind) === -1;
    });
    document.querySelectorAll("fieldset").forEach(function (fieldset) {
      var rows = fieldset.querySelectorAll(".form-row");
      if (!rows.length) { return; }
      var shown = Array.prototype.some.call(rows, function (row) { return !row.hidden; });
      fieldset.hidden = !shown;
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var select = document.getElementById("id_kind");
    if (select) { select.addEventListener("change", apply); }
    apply();
  });
})();
