// Campaign form: switch between rich text (Quill), Markdown and raw HTML without losing content.
// Rich text keeps the HTML in the hidden html_body field; Markdown accepts HTML as it is, so only
// a switch *into* the rich-text editor can simplify formatting, and that asks first.
//
// Merge fields ({{ … }}, {% … %}) must come out of every switch byte for byte. Quill escapes the
// quotes in {{ first_name|default:"member" }} as &quot; and collapses runs of spaces, so tokens are
// decoded on the way out of the editor and mapped back to exactly what was written on the way in.
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
  const TOKEN = /{{[\s\S]*?}}|{%[\s\S]*?%}|{#[\s\S]*?#}/g;
  // Tokens as written, by their whitespace-collapsed form (what the editor gives back).
  const writtenTokens = new Map();
  let editor = null;
  let current = (radios.find((radio) => radio.checked) || {}).value || "rich";

  const collapse = (token) => token.replace(/\s+/g, " ");
  // DOMParser builds an inert document: nothing in it loads or runs.
  const decode = (text) => new DOMParser().parseFromString(text, "text/html").documentElement.textContent;

  function restoreTokens(html) {
    return html.replace(TOKEN, (token) => {
      const plain = decode(token).replace(/\u00a0/g, " ");
      return writtenTokens.get(collapse(plain)) || plain;
    });
  }

  function rememberTokens(html) {
    (html.match(TOKEN) || []).forEach((token) => writtenTokens.set(collapse(token), token));
  }

  // Before the HTML is parsed for the editor: quotes inside a token inside a tag (href="{{ x|default:"y" }}")
  // would end the attribute, and runs of spaces in text would collapse into one.
  function protectTokens(html) {
    return html.replace(TOKEN, (token, offset) => {
      const inTag = html.lastIndexOf("<", offset) > html.lastIndexOf(">", offset);
      if (inTag) return token.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");
      return token.replace(/ {2,}/g, (spaces) => "\u00a0".repeat(spaces.length));
    });
  }

  const richHtml = () => restoreTokens(editor.getSemanticHTML().replace(/&nbsp;|\u00a0/g, " "));

  function ensureEditor() {
    if (editor || typeof window.Quill === "undefined") return editor;
    editor = new window.Quill("#rich-editor", {
      theme: "snow",
      modules: {
        toolbar: {
          container: [[{ header: [1, 2, 3, false] }], ["bold", "italic", "underline", "link"],
            [{ list: "ordered" }, { list: "bullet" }], ["blockquote", "image"], ["clean"]],
          handlers: { image: () => imageDialog.open() },
        },
      },
    });
    const imageButton = document.querySelector(".ql-toolbar button.ql-image");
    if (imageButton) imageButton.setAttribute("aria-label", "Insert an image");
    // Quill's heading drop-down is a role=button with no name (axe: aria-command-name).
    const headingPicker = document.querySelector(".ql-toolbar .ql-header .ql-picker-label");
    if (headingPicker) headingPicker.setAttribute("aria-label", "Text style: heading or normal text");
    editor.on("text-change", () => { htmlArea.value = richHtml(); });
    return editor;
  }

  function loadRich(html) {
    ensureEditor();
    if (!editor) return;
    rememberTokens(html || "");
    editor.setContents([]);
    editor.clipboard.dangerouslyPasteHTML(0, protectTokens(html || ""), "silent");
    htmlArea.value = richHtml();
  }

  function richWouldSimplify(html) {
    const doc = new DOMParser().parseFromString(html || "", "text/html");
    return Array.from(doc.body.querySelectorAll("*")).some((element) =>
      !RICH_TAGS.has(element.tagName) || element.hasAttribute("style") || element.hasAttribute("class"));
  }

  const csrfToken = () => form.querySelector("input[name=csrfmiddlewaretoken]").value;

  async function markdownToHtml(source) {
    const body = new URLSearchParams({ source });
    const response = await fetch(form.dataset.markdownUrl, {
      method: "POST", body, headers: { "X-CSRFToken": csrfToken() }, credentials: "same-origin",
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

  // The image button: a dialog asks for the file and its description, the server checks and
  // stores the image, and the editor gets an <img> with the image's absolute address.
  const imageDialog = (() => {
    const dialog = document.getElementById("image-dialog");
    if (!dialog || typeof dialog.showModal !== "function") return { open() {} };
    const imageForm = dialog.querySelector("form");
    const fileInput = imageForm.querySelector("input[type=file]");
    const altInput = imageForm.querySelector("input[name=alt]");
    const problem = dialog.querySelector(".image-dialog-error");
    const submit = imageForm.querySelector("button[type=submit]");
    let insertAt = 0;

    function say(text) { problem.textContent = text; problem.hidden = !text; }

    function open() {
      insertAt = (editor.getSelection(true) || { index: editor.getLength() }).index;
      imageForm.reset();
      say("");
      dialog.showModal();
      fileInput.focus();
    }

    function insert(image, alt) {
      const width = Math.min(image.width, Number(dialog.dataset.displayWidth) || 600);
      const element = document.createElement("img");
      element.setAttribute("src", image.url);
      element.setAttribute("alt", alt);
      element.setAttribute("width", String(width));
      editor.clipboard.dangerouslyPasteHTML(insertAt, element.outerHTML, "user");
      editor.setSelection(insertAt + 1, 0, "user");
    }

    imageForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const alt = altInput.value.trim();
      if (!fileInput.files.length) { say("Choose an image file (PNG, JPEG, GIF or WebP)."); fileInput.focus(); return; }
      if (!alt) { say("Describe the image in a few words: people who cannot see it read this instead."); altInput.focus(); return; }
      say("");
      submit.classList.add("is-loading");
      submit.disabled = true;
      try {
        const response = await fetch(imageForm.action, {
          method: "POST", body: new FormData(imageForm), headers: { "X-CSRFToken": csrfToken() },
          credentials: "same-origin",
        });
        const answer = await response.json().catch(() => ({ error: "The upload failed. Try again." }));
        if (!response.ok) { say(answer.error || "The upload failed. Try again."); return; }
        dialog.close();
        insert(answer, alt);
      } catch (error) {
        say("The upload failed (is the connection down?). Try again.");
      } finally {
        submit.classList.remove("is-loading");
        submit.disabled = false;
      }
    });
    altInput.addEventListener("input", () => { if (altInput.value.trim()) say(""); });
    fileInput.addEventListener("change", () => say(""));
    dialog.querySelectorAll("[data-close]").forEach((button) => button.addEventListener("click", () => dialog.close()));
    dialog.addEventListener("close", () => { if (editor) editor.focus(); });
    return { open };
  })();

  radios.forEach((radio) => radio.addEventListener("change", () => switchTo(radio.value)));
  form.addEventListener("submit", () => { if (current === "rich" && editor) htmlArea.value = richHtml(); });
  show(current);
  if (current === "rich") loadRich(htmlArea.value);
})();
