// Audience pages: "select all" on contact tables and the segment rule editor.
(() => {
  // Select or clear every row checkbox of the table whose header box was clicked.
  document.addEventListener("change", (event) => {
    const all = event.target.closest("[data-select-all]");
    if (all) {
      const table = all.closest("table");
      table.querySelectorAll(`input[name="${all.dataset.selectAll}"]`).forEach((box) => {
        box.checked = all.checked;
      });
    }
    const ruleSelect = event.target.closest("[data-rule-row] select[name$='-rule']");
    if (ruleSelect) {
      showRuleInputs(ruleSelect.closest("[data-rule-row]"));
    }
  });

  function ruleInputs() {
    const rules = document.getElementById("rules");
    return rules ? JSON.parse(rules.dataset.ruleInputs) : {};
  }

  // Show only the inputs the chosen kind of rule uses (all stay in the form: the server ignores the rest).
  function showRuleInputs(row) {
    const select = row.querySelector("select[name$='-rule']");
    const kind = select.value.split(":")[0];
    const wanted = ruleInputs()[kind] || [];
    const operator = select.value.split(":")[1];
    row.querySelectorAll("[data-input]").forEach((control) => {
      let shown = wanted.includes(control.dataset.input);
      if (control.dataset.input === "value" && kind === "attribute" && operator === "empty") {
        shown = false;
      }
      control.classList.toggle("is-hidden", !shown);
    });
  }

  document.addEventListener("click", (event) => {
    const add = event.target.closest("[data-add-rule]");
    if (!add) {
      return;
    }
    const total = document.querySelector("input[name='rules-TOTAL_FORMS']");
    const template = document.getElementById("rule-template");
    const index = parseInt(total.value, 10);
    const holder = document.createElement("div");
    holder.innerHTML = template.innerHTML.replaceAll("__prefix__", String(index));
    const row = holder.firstElementChild;
    document.getElementById("rules").appendChild(row);
    total.value = String(index + 1);
    showRuleInputs(row);
  });

  function initialise() {
    document.querySelectorAll("#rules [data-rule-row]").forEach(showRuleInputs);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", initialise);
  } else {
    initialise();
  }
})();
