// Progressive enhancement only: every page works without this file.
// Inline validation with the server's own (translated) messages, sections shown when they apply.
(function () {
  "use strict";

  function errorSlot(form, field) {
    return form.querySelector('[data-error-for="' + field.name + '"]');
  }

  function check(form, field) {
    if (!field.name || field.type === "hidden" || field.disabled) return true;
    var other = field.getAttribute("data-needs-one-of");
    if (other) {
      var partner = form.elements[other];
      field.setCustomValidity(!field.value && partner && !partner.value ? (field.getAttribute("data-error") || "") : "");
    }
    var hidden = field.closest("[hidden]");
    var ok = hidden ? true : field.checkValidity();
    var slot = errorSlot(form, field);
    if (slot) {
      var first = form.elements[field.name];
      var source = first && first.length && !first.tagName ? first[0] : field;
      slot.textContent = ok ? "" : (source.getAttribute("data-error") || field.validationMessage);
    }
    if (ok) field.removeAttribute("aria-invalid"); else field.setAttribute("aria-invalid", "true");
    return ok;
  }

  function enhance(form) {
    form.noValidate = true;
    form.addEventListener("blur", function (e) { if (e.target.name) check(form, e.target); }, true);
    form.addEventListener("change", function (e) { if (e.target.name) check(form, e.target); });
    form.addEventListener("submit", function (e) {
      var firstBad = null;
      Array.prototype.forEach.call(form.elements, function (field) {
        if (!check(form, field) && !firstBad) firstBad = field;
      });
      if (firstBad) { e.preventDefault(); firstBad.focus(); }
    });
  }

  function toggleSections(form) {
    var sections = form.querySelectorAll("[data-show-when]");
    function update() {
      Array.prototype.forEach.call(sections, function (section) {
        var rule = section.getAttribute("data-show-when").split("=");
        var chosen = form.querySelector('[name="' + rule[0] + '"]:checked') || form.elements[rule[0]];
        var value = chosen && chosen.value !== undefined ? chosen.value : "";
        section.hidden = value !== rule[1];
      });
    }
    form.addEventListener("change", update);
    update();
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("form[data-validate]"), function (form) {
      enhance(form);
      toggleSections(form);
    });
    Array.prototype.forEach.call(document.querySelectorAll("select[data-autosubmit]"), function (select) {
      var button = select.form.querySelector("button");
      if (button) button.hidden = true;
      select.addEventListener("change", function () { select.form.submit(); });
    });
  });
})();
