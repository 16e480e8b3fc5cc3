// The response editor: a small rich-text editor over a <textarea data-rich-editor>.
//
// Written for our CSP (no inline script or handler, no external code): a toolbar and a
// contenteditable area replace the textarea on screen; the textarea stays in the form, hidden,
// and always holds the area's HTML, so the form posts it as usual (and works without this file,
// as an HTML source box). Anything that enters the area (the stored body, a paste) is first
// reduced to the same small allowlist the server keeps (postroom/responses/sanitize.py); the
// server sanitises again on save and on every render, so this is for a clean editing view only.
(function () {
  "use strict";

  const ALLOWED = new Set(["A", "B", "BLOCKQUOTE", "BR", "DIV", "EM", "I", "LI", "OL", "P", "S", "STRONG", "U", "UL"]);
  const DROPPED_WITH_CONTENT = new Set(["SCRIPT", "STYLE", "TEMPLATE", "IFRAME", "OBJECT", "EMBED", "SVG", "MATH", "TITLE", "HEAD", "NOSCRIPT"]);
  const SCHEMES = ["http:", "https:", "mailto:"];

  function safeHref(value) {
    try {
      const url = new URL(value.trim(), "https://invalid.example/");
      if (!SCHEMES.includes(url.protocol) || !/^(https?|mailto):/i.test(value.trim())) return null;
      return url.href;
    } catch (error) {
      return null;
    }
  }

  // Copy the allowed part of an inert tree into `target` (nodes created in the live document).
  function copyAllowed(source, target) {
    for (const node of Array.from(source.childNodes)) {
      if (node.nodeType === Node.TEXT_NODE) {
        target.appendChild(document.createTextNode(node.nodeValue));
      } else if (node.nodeType === Node.ELEMENT_NODE) {
        const name = node.nodeName.toUpperCase();
        if (DROPPED_WITH_CONTENT.has(name)) continue;
        if (!ALLOWED.has(name)) {
          copyAllowed(node, target);
          continue;
        }
        const element = document.createElement(name.toLowerCase());
        if (name === "A") {
          const href = safeHref(node.getAttribute("href") || "");
          if (href) element.setAttribute("href", href);
          element.setAttribute("rel", "noopener noreferrer nofollow");
        }
        copyAllowed(node, element);
        target.appendChild(element);
      }
    }
  }

  // HTML text → allowed nodes. DOMParser builds an inert document: no script runs, nothing loads.
  function allowedFragment(html) {
    const inert = new DOMParser().parseFromString(html, "text/html");
    const fragment = document.createDocumentFragment();
    copyAllowed(inert.body, fragment);
    return fragment;
  }

  const BUTTONS = [
    { command: "bold", label: "Bold", text: "B" },
    { command: "italic", label: "Italic", text: "I" },
    { command: "underline", label: "Underline", text: "U" },
    { command: "insertUnorderedList", label: "Bulleted list", text: "• List" },
    { command: "insertOrderedList", label: "Numbered list", text: "1. List" },
    { command: "createLink", label: "Link", text: "Link" },
    { command: "unlink", label: "Remove link", text: "Unlink" },
  ];

  function setUp(textarea) {
    const wrapper = document.createElement("div");
    wrapper.className = "rich-editor";
    const toolbar = document.createElement("div");
    toolbar.className = "rich-editor-toolbar";
    toolbar.setAttribute("role", "toolbar");
    toolbar.setAttribute("aria-label", "Formatting");
    const area = document.createElement("div");
    area.className = "rich-editor-area";
    area.contentEditable = "true";
    area.setAttribute("role", "textbox");
    area.setAttribute("aria-multiline", "true");
    area.id = textarea.id + "_editor";
    const label = document.querySelector(`label[for="${textarea.id}"]`);
    if (label) {
      label.id = label.id || textarea.id + "_label";
      area.setAttribute("aria-labelledby", label.id);
      label.addEventListener("click", () => area.focus());
    }
    area.appendChild(allowedFragment(textarea.value));

    const sync = () => { textarea.value = area.innerHTML; };
    for (const spec of BUTTONS) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "btn btn-sm";
      button.textContent = spec.text;
      button.title = spec.label;
      button.setAttribute("aria-label", spec.label);
      button.addEventListener("mousedown", (event) => event.preventDefault()); // keep the selection
      button.addEventListener("click", () => {
        area.focus();
        if (spec.command === "createLink") {
          const value = window.prompt("Link address (https://…, mailto:…)", "https://");
          const href = value && safeHref(value);
          if (!href) return;
          document.execCommand("createLink", false, href);
        } else {
          document.execCommand(spec.command, false);
        }
        sync();
      });
      toolbar.appendChild(button);
    }
    area.addEventListener("input", sync);
    area.addEventListener("keydown", (event) => {
      if (!(event.ctrlKey || event.metaKey)) return;
      const command = { b: "bold", i: "italic", u: "underline" }[event.key.toLowerCase()];
      if (command) {
        event.preventDefault();
        document.execCommand(command, false);
        sync();
      }
    });
    area.addEventListener("paste", (event) => {
      const data = event.clipboardData;
      if (!data) return;
      event.preventDefault();
      const html = data.getData("text/html");
      const selection = window.getSelection();
      if (!selection || !selection.rangeCount) return;
      const range = selection.getRangeAt(0);
      range.deleteContents();
      const fragment = html ? allowedFragment(html) : document.createTextNode(data.getData("text/plain"));
      const last = fragment.lastChild;
      range.insertNode(fragment);
      if (last) {
        range.setStartAfter(last);
        range.collapse(true);
        selection.removeAllRanges();
        selection.addRange(range);
      }
      sync();
    });
    area.addEventListener("drop", (event) => event.preventDefault()); // files go in as attachments
    textarea.form && textarea.form.addEventListener("submit", sync);

    wrapper.appendChild(toolbar);
    wrapper.appendChild(area);
    textarea.insertAdjacentElement("beforebegin", wrapper);
    textarea.classList.add("hidden");
    textarea.setAttribute("aria-hidden", "true");
    textarea.tabIndex = -1;
    sync();
  }

  window.PostroomRichEditor = { allowedFragment: allowedFragment, safeHref: safeHref };
  function start() { document.querySelectorAll("textarea[data-rich-editor]").forEach(setUp); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
