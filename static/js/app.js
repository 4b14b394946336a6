// Cobalt Mail: the few behaviours htmx attributes cannot express.
document.addEventListener("click", (event) => {
  const burger = event.target.closest(".navbar-burger");
  if (burger) {
    const menu = document.getElementById(burger.dataset.target);
    burger.classList.toggle("is-active");
    menu.classList.toggle("is-active");
  }
  const confirmButton = event.target.closest("[data-confirm]");
  if (confirmButton && !window.confirm(confirmButton.dataset.confirm)) {
    event.preventDefault();
  }
  const closer = event.target.closest(".notification .delete");
  if (closer) {
    closer.parentNode.remove();
  }
});

// Preselect the browser's own time zone in time-zone pickers the server left at its default.
document.addEventListener("DOMContentLoaded", () => {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  document.querySelectorAll("select[data-browser-time-zone]").forEach((select) => {
    if (select.dataset.userChosen !== "1" && [...select.options].some((option) => option.value === zone)) {
      select.value = zone;
    }
  });
});
