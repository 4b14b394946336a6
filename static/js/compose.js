// Campaign form: switch between rich text (Quill), Markdown and raw HTML without losing content.
// Rich text keeps the HTML in the hidden html_body field; Markdown accepts HTML as it is, so only
// a switch *into* the rich-text editor can simplify formatting, and that asks first.
(() => {
  const form = document.querySelector("form.campaign-form");
  if (!form) return;
  const htmlArea = form.querySelector("#id_html_body");
  const markdownArea = form.querySelector("#id_body_source");
  const note = document.getElementById("body-mode-note");
  const radios = Array.from(form.querySelectorAll("input[name=body_mode]"));
  // Elements the editor represents faithfully; anything else (tables, divs, styles) is simplified.
  const RICH_TAGS = new Set(["P", "BR", "STRONG", "B", "EM", "I", "U", "S", "A", "H1", "H2", "H3",
    "OL", "UL", "LI", "BLOCKQUOTE", "PRE", "CODE", "IMG", "SPAN"]);
  let editor = null;
  let current = (radios.find((radio) => radio.checked) || {}).value || "html";

  const richHtml = () => editor.getSemanticHTML().replace(/&nbsp;|\u00a0/g, " ");

  function ensureEditor() {
    if (editor || typeof window.Quill === "undefined") return editor;
    editor = new window.Quill("#rich-editor", {
      theme: "snow",
      modules: {
        toolbar: [[{ header: [1, 2, 3, false] }], ["bold", "italic", "underline", "link"],
          [{ list: "ordered" }, { list: "bullet" }], ["blockquote"], ["clean"]],
      },
    });
    editor.on("text-change", () => { htmlArea.value = richHtml(); });
    return editor;
  }

  function loadRich(html) {
    ensureEditor();
    if (!editor) return;
    editor.setContents([]);
    editor.clipboard.dangerouslyPasteHTML(0, html || "", "silent");
    htmlArea.value = richHtml();
  }

  // DOMParser builds an inert document: nothing in it loads or runs.
  function richWouldSimplify(html) {
    const doc = new DOMParser().parseFromString(html || "", "text/html");
    return Array.from(doc.body.querySelectorAll("*")).some((element) =>
      !RICH_TAGS.has(element.tagName) || element.hasAttribute("style") || element.hasAttribute("class"));
  }

  async function markdownToHtml(source) {
    const body = new URLSearchParams({ source });
    const token = form.querySelector("input[name=csrfmiddlewaretoken]").value;
    const response = await fetch(form.dataset.markdownUrl, {
      method: "POST", body, headers: { "X-CSRFToken": token }, credentials: "same-origin",
    });
    if (!response.ok) throw new Error(await response.text());
    return response.text();
  }

  function show(mode) {
    form.querySelectorAll(".body-pane").forEach((pane) => { pane.hidden = pane.dataset.mode !== mode; });
    radios.forEach((radio) => {
      radio.checked = radio.value === mode;
      radio.closest("label").classList.toggle("is-link", radio.value === mode);
    });
    current = mode;
  }

  async function switchTo(mode) {
    const from = current;
    if (mode === from) return;
    let html = from === "rich" && editor ? richHtml() : htmlArea.value;
    try {
      if (from === "markdown") html = await markdownToHtml(markdownArea.value);
    } catch (error) {
      note.textContent = "Could not convert the Markdown: " + error.message;
      show(from);
      return;
    }
    if (mode === "rich") {
      const message = "The rich-text editor keeps headings, lists, links, bold, italic and images. Tables, "
        + "layout boxes and styles in this body would be simplified. Switch anyway?";
      if (richWouldSimplify(html) && !window.confirm(message)) {
        show(from);
        return;
      }
      loadRich(html);
      note.textContent = "";
    } else if (mode === "markdown") {
      // Markdown passes HTML through unchanged, so nothing is lost.
      if (from !== "markdown") markdownArea.value = html;
      htmlArea.value = html;
      note.textContent = from === "markdown" ? "" : "The HTML is kept as it is: Markdown accepts HTML.";
    } else {
      htmlArea.value = html;
      note.textContent = "";
    }
    show(mode);
  }

  radios.forEach((radio) => radio.addEventListener("change", () => switchTo(radio.value)));
  form.addEventListener("submit", () => { if (current === "rich" && editor) htmlArea.value = richHtml(); });
  show(current);
  if (current === "rich") loadRich(htmlArea.value);
})();
