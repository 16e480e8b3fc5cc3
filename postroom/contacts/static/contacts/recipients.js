// Recipient autocomplete for the composer's To, Cc and Bcc fields.
//
// Contract: a <form data-recipients-url="..."> whose inputs named to, cc and bcc hold
// comma-separated addresses. The URL is the contacts autocomplete endpoint
// (GET ?q=<prefix> → {"results": [{"name", "email", ...}], "truncated"}), which answers only
// from the books the member can see. The composer works without this file; it only helps to
// type an address. Names are put in the page with textContent, never as HTML.
//
// Keyboard: typing looks up the address being typed (after the last comma); ArrowDown / ArrowUp
// move through the suggestions (aria-activedescendant); Enter or Tab chooses; Escape closes.
(() => {
  "use strict";
  if (window.postroomRecipients) return; // loaded once, however many composers a page has
  window.postroomRecipients = true;

  const FIELDS = "form[data-recipients-url] input[name=to], form[data-recipients-url] input[name=cc], form[data-recipients-url] input[name=bcc]";
  let box = null; // { input, list, items, active }
  let timer = null;
  let serial = 0;

  function current(input) {
    const before = input.value.slice(0, input.selectionStart ?? input.value.length);
    const start = before.lastIndexOf(",") + 1;
    return { start, text: before.slice(start).trim() };
  }

  function close() {
    if (!box) return;
    box.list.remove();
    box.input.setAttribute("aria-expanded", "false");
    box.input.removeAttribute("aria-activedescendant");
    box = null;
  }

  function formatted(item) {
    const name = (item.name || "").replace(/["\\]/g, "").trim();
    if (!name) return item.email;
    return /[,;:<>@()[\]."]/.test(name) ? `"${name}" <${item.email}>` : `${name} <${item.email}>`;
  }

  function choose(index) {
    if (!box || !box.items[index]) return;
    const input = box.input;
    const caret = input.selectionStart ?? input.value.length;
    const { start } = current(input);
    const prefix = input.value.slice(0, start).replace(/\s*$/, "");
    const rest = input.value.slice(caret).replace(/^[^,]*,?\s*/, "");
    const chosen = `${prefix ? `${prefix} ` : ""}${formatted(box.items[index])}, `;
    input.value = chosen + rest;
    input.setSelectionRange(chosen.length, chosen.length);
    close();
    input.focus();
    input.dispatchEvent(new Event("change", { bubbles: true })); // the draft autosave listens
  }

  function highlight(index) {
    if (!box) return;
    box.active = (index + box.items.length) % box.items.length;
    [...box.list.children].forEach((option, position) => option.setAttribute("aria-selected", String(position === box.active)));
    box.input.setAttribute("aria-activedescendant", `${box.list.id}-${box.active}`);
  }

  function show(input, items) {
    close();
    if (!items.length) return;
    const list = document.createElement("ul");
    list.className = "recipient-list";
    list.id = `recipient-list-${input.name}`;
    list.setAttribute("role", "listbox");
    list.setAttribute("aria-label", "Contacts");
    items.forEach((item, index) => {
      const option = document.createElement("li");
      option.id = `${list.id}-${index}`;
      option.setAttribute("role", "option");
      const name = document.createElement("strong");
      name.textContent = item.name || item.email;
      const email = document.createElement("span");
      email.className = "muted small";
      email.textContent = item.email;
      option.append(name, email);
      option.addEventListener("mousedown", (event) => { event.preventDefault(); choose(index); });
      list.append(option);
    });
    input.insertAdjacentElement("afterend", list);
    input.setAttribute("aria-controls", list.id);
    input.setAttribute("aria-expanded", "true");
    box = { input, list, items, active: 0 };
    highlight(0);
  }

  function lookup(input) {
    const { text } = current(input);
    if (!text || text.includes("<")) { close(); return; }
    const request = ++serial;
    const url = new URL(input.form.dataset.recipientsUrl, window.location.origin);
    url.searchParams.set("q", text);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : { results: [] }))
      .then((data) => { if (request === serial && document.activeElement === input) show(input, Array.isArray(data.results) ? data.results : []); })
      .catch(close);
  }

  function prepare(input) {
    if (input.dataset.recipientsReady) return;
    input.dataset.recipientsReady = "1";
    input.setAttribute("autocomplete", "off"); // the browser's own list would cover ours
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
  }

  document.addEventListener("focusin", (event) => {
    const input = event.target.closest && event.target.closest(FIELDS);
    if (input) prepare(input);
  });
  document.addEventListener("input", (event) => {
    const input = event.target.closest && event.target.closest(FIELDS);
    if (!input) return;
    prepare(input);
    clearTimeout(timer);
    timer = setTimeout(() => lookup(input), 120);
  });
  document.addEventListener("keydown", (event) => {
    if (!box || event.target !== box.input) return;
    if (event.key === "ArrowDown") { event.preventDefault(); highlight(box.active + 1); }
    else if (event.key === "ArrowUp") { event.preventDefault(); highlight(box.active - 1); }
    else if (event.key === "Enter" || event.key === "Tab") { event.preventDefault(); event.stopPropagation(); choose(box.active); }
    else if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); close(); }
  }, true);
  document.addEventListener("focusout", (event) => {
    if (box && event.target === box.input) setTimeout(() => { if (box && document.activeElement !== box.input) close(); }, 150);
  });
})();
