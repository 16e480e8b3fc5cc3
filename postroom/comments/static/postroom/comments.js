// Mention autocomplete for comment boxes (textarea[data-mentions-url]). Comments work without
// this file; it only helps to write @[Name](member:ID) tokens. Names are put in the page with
// textContent, never as HTML.
(() => {
  if (window.postroomComments) return; // loaded once, however many composers a page has
  window.postroomComments = true;

  const TRIGGER = /(^|\s)@([^\s@[\]()]{0,30}(?: [^\s@[\]()]{0,30})?)$/;
  let box = null; // { textarea, list, items, active, start }
  let timer = null;
  let serial = 0;

  function close() {
    if (box) box.list.remove();
    box = null;
  }

  function choose(index) {
    if (!box || !box.items[index]) return;
    const { textarea, start } = box;
    const token = `${box.items[index].mention} `;
    const end = textarea.selectionStart;
    textarea.value = textarea.value.slice(0, start) + token + textarea.value.slice(end);
    const caret = start + token.length;
    textarea.setSelectionRange(caret, caret);
    close();
    textarea.focus();
  }

  function highlight(index) {
    if (!box) return;
    box.active = (index + box.items.length) % box.items.length;
    [...box.list.children].forEach((option, position) => option.setAttribute("aria-selected", String(position === box.active)));
    box.textarea.setAttribute("aria-activedescendant", `mention-option-${box.active}`);
  }

  function show(textarea, start, items) {
    close();
    if (!items.length) return;
    const list = document.createElement("ul");
    list.className = "mention-list";
    list.setAttribute("role", "listbox");
    list.id = "mention-list";
    items.forEach((item, index) => {
      const option = document.createElement("li");
      option.id = `mention-option-${index}`;
      option.setAttribute("role", "option");
      const name = document.createElement("strong");
      name.textContent = item.name;
      const detail = document.createElement("span");
      detail.className = "muted small";
      detail.textContent = item.kind === "team" ? " team" : ` ${item.detail}`;
      option.append(name, detail);
      option.addEventListener("mousedown", (event) => { event.preventDefault(); choose(index); });
      list.append(option);
    });
    textarea.insertAdjacentElement("afterend", list);
    textarea.setAttribute("aria-controls", "mention-list");
    box = { textarea, list, items, active: 0, start };
    highlight(0);
  }

  function lookup(textarea) {
    const before = textarea.value.slice(0, textarea.selectionStart);
    const match = TRIGGER.exec(before);
    if (!match) { close(); return; }
    const start = before.length - match[2].length - 1;
    const request = ++serial;
    const url = new URL(textarea.dataset.mentionsUrl, window.location.origin);
    url.searchParams.set("q", match[2]);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : []))
      .then((items) => { if (request === serial) show(textarea, start, Array.isArray(items) ? items : []); })
      .catch(close);
  }

  document.addEventListener("input", (event) => {
    const textarea = event.target.closest("textarea[data-mentions-url]");
    if (!textarea) return;
    clearTimeout(timer);
    timer = setTimeout(() => lookup(textarea), 120);
  });
  document.addEventListener("keydown", (event) => {
    if (!box || event.target !== box.textarea) return;
    if (event.key === "ArrowDown") { event.preventDefault(); highlight(box.active + 1); }
    else if (event.key === "ArrowUp") { event.preventDefault(); highlight(box.active - 1); }
    else if (event.key === "Enter" || event.key === "Tab") { event.preventDefault(); choose(box.active); }
    else if (event.key === "Escape") { event.preventDefault(); close(); }
  });
  document.addEventListener("focusout", (event) => {
    if (box && event.target === box.textarea) setTimeout(close, 150);
  });
  // Ctrl/Cmd+Enter sends the comment.
  document.addEventListener("keydown", (event) => {
    const textarea = event.target.closest(".comment-composer textarea");
    if (textarea && event.key === "Enter" && (event.ctrlKey || event.metaKey) && !box) {
      event.preventDefault();
      textarea.form.requestSubmit();
    }
  });
})();
