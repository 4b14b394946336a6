// Reports: a recipient's event timeline opens in a row right under that recipient's row
// (reports/campaign_recipients.html); a second click on the address closes it.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-timeline-url]");
  if (!link) {
    return;
  }
  event.preventDefault();
  const row = link.closest("tr");
  const next = row.nextElementSibling;
  if (next && next.classList.contains("timeline-row")) {
    next.remove();
    link.setAttribute("aria-expanded", "false");
    return;
  }
  const timelineRow = document.createElement("tr");
  timelineRow.className = "timeline-row";
  const cell = document.createElement("td");
  cell.colSpan = row.cells.length;
  const box = document.createElement("div");
  box.id = `timeline-${link.dataset.recipient}`;
  box.setAttribute("aria-live", "polite");
  box.textContent = "Loading events…";
  cell.appendChild(box);
  timelineRow.appendChild(cell);
  row.after(timelineRow);
  link.setAttribute("aria-expanded", "true");
  link.setAttribute("aria-controls", box.id);
  htmx.ajax("GET", link.dataset.timelineUrl, { target: box, swap: "innerHTML" });
});
