// The response picker: choose a response while writing, fill in its inputs, insert it.
//
// Contract with the composer it sits in (markup: responses/_picker.html, included with
// {% response_picker organization target="#id_text" subject="#id_subject" to="#id_to" conversation=conversation %}):
// - data-target: a CSS selector for the message body. A <textarea> or <input> gets the plain-text
//   version inserted at the cursor; a [contenteditable] element gets the (sanitised) HTML inserted
//   at the caret, or at the end. The picker then dispatches an "input" event on it (bubbling) so
//   the composer's own editor can sync.
// - data-subject: a selector for the subject input; filled only when it is empty and the response
//   has a subject.
// - data-to: a selector for the To input; its value is sent so that the recipient variables use
//   its first address. data-conversation (optional): the conversation id, used when To is empty.
// - Attachments: for each attachment of the response, a hidden
//   <input type="hidden" name="response_attachment" value="<attachment uuid>"> is added inside the
//   picker (so inside the composer's <form>), listed with a Remove button. The server resolves
//   them again, scoped to the member, when the form is submitted (postroom.outbox.views).
// - Before inserting, the picker dispatches a cancelable "postroom:response-inserted" event on
//   its root element with detail {subject, html, text, attachments}; a composer that wants to
//   insert the content itself calls event.preventDefault() (the hidden attachment inputs are
//   still added).
// The render call is POST /api/v1/orgs/<slug>/responses/<id>/render with the session and the
// CSRF token of the enclosing form (header X-CSRFToken).
//
// Keyboard: the button opens the panel and focuses the search box; typing filters; ArrowDown /
// ArrowUp move through the matches (aria-activedescendant); Enter chooses; Escape closes and
// returns focus to the button. A response with inputs shows one field per input: Enter in the
// last one (or the Insert button) inserts, Escape goes back to the list.
(function () {
  "use strict";
  if (window.postroomResponsePicker) return; // loaded once (app pages load it, and so does the picker's markup)
  window.postroomResponsePicker = true;

  function csrfToken(root) {
    const form = root.closest("form");
    const field = (form && form.querySelector("input[name=csrfmiddlewaretoken]")) || document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function insertText(element, text) {
    const start = element.selectionStart ?? element.value.length;
    const end = element.selectionEnd ?? element.value.length;
    element.value = element.value.slice(0, start) + text + element.value.slice(end);
    const caret = start + text.length;
    element.setSelectionRange(caret, caret);
  }

  function insertHtml(element, html) {
    const fragment = window.PostroomRichEditor
      ? window.PostroomRichEditor.allowedFragment(html)
      : new DOMParser().parseFromString(html, "text/html").body; // already sanitised by the server
    const nodes = document.createDocumentFragment();
    for (const node of Array.from(fragment.childNodes)) nodes.appendChild(document.importNode(node, true));
    const selection = window.getSelection();
    if (selection && selection.rangeCount && element.contains(selection.getRangeAt(0).commonAncestorContainer)) {
      const range = selection.getRangeAt(0);
      range.deleteContents();
      range.insertNode(nodes);
    } else {
      element.appendChild(nodes);
    }
  }

  function setUp(root) {
    if (root.dataset.pickerReady) return;
    root.dataset.pickerReady = "1";
    const opener = root.querySelector("[data-picker-open]");
    const panel = root.querySelector(".response-picker-panel");
    const search = root.querySelector("[data-picker-search]");
    const list = root.querySelector("[data-picker-list]");
    const inputsBox = root.querySelector("[data-picker-inputs]");
    const status = root.querySelector("[data-picker-status]");
    const attachmentList = root.querySelector("[data-picker-attachments]");
    const options = Array.from(list.querySelectorAll("[role=option]"));
    let active = null;
    let chosen = null;

    function visibleOptions() { return options.filter((option) => !option.hidden); }

    function setActive(option) {
      options.forEach((item) => item.setAttribute("aria-selected", item === option ? "true" : "false"));
      active = option;
      if (option) {
        search.setAttribute("aria-activedescendant", option.id);
        option.scrollIntoView({ block: "nearest" });
      } else {
        search.removeAttribute("aria-activedescendant");
      }
    }

    function filter() {
      const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      options.forEach((option) => {
        const label = option.textContent.toLowerCase();
        option.hidden = !words.every((word) => label.includes(word));
      });
      const visible = visibleOptions();
      setActive(visible.includes(active) ? active : visible[0] || null);
      status.textContent = visible.length ? `${visible.length} response${visible.length === 1 ? "" : "s"}` : "No response matches.";
    }

    function open() {
      panel.hidden = false;
      opener.setAttribute("aria-expanded", "true");
      showList();
      search.focus();
    }

    function close() {
      panel.hidden = true;
      opener.setAttribute("aria-expanded", "false");
      opener.focus();
    }

    function showList() {
      chosen = null;
      inputsBox.hidden = true;
      inputsBox.replaceChildren();
      search.hidden = false;
      list.hidden = false;
      filter();
    }

    function choose(option) {
      if (!option) return;
      chosen = option;
      const labels = JSON.parse(option.dataset.inputs || "[]");
      if (!labels.length) {
        render({});
        return;
      }
      search.hidden = true;
      list.hidden = true;
      inputsBox.hidden = false;
      inputsBox.replaceChildren();
      labels.forEach((label, index) => {
        const field = document.createElement("div");
        field.className = "field";
        const labelElement = document.createElement("label");
        labelElement.htmlFor = `response-input-${index}`;
        labelElement.textContent = label;
        const input = document.createElement("input");
        input.type = "text";
        input.id = `response-input-${index}`;
        input.dataset.label = label;
        input.maxLength = 500;
        field.append(labelElement, input);
        inputsBox.appendChild(field);
      });
      const insert = document.createElement("button");
      insert.type = "button";
      insert.className = "btn btn-sm btn-primary";
      insert.textContent = "Insert";
      insert.addEventListener("click", collectAndRender);
      const back = document.createElement("button");
      back.type = "button";
      back.className = "btn btn-sm";
      back.textContent = "Back";
      back.addEventListener("click", () => { showList(); search.focus(); });
      inputsBox.append(insert, back);
      inputsBox.querySelector("input").focus();
    }

    function collectAndRender() {
      const values = {};
      inputsBox.querySelectorAll("input[data-label]").forEach((input) => { values[input.dataset.label] = input.value; });
      render(values);
    }

    function addAttachment(attachment) {
      if (attachmentList.querySelector(`input[value="${CSS.escape(attachment.id)}"]`)) return;
      const item = document.createElement("li");
      const hidden = document.createElement("input");
      hidden.type = "hidden";
      hidden.name = "response_attachment";
      hidden.value = attachment.id;
      const size = document.createElement("span");
      size.className = "muted small";
      size.textContent = `${Math.max(1, Math.round(attachment.size / 1024))} KB`;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "btn btn-sm";
      remove.textContent = "Remove";
      remove.dataset.pickerDetach = "";
      item.append(hidden, document.createTextNode(attachment.filename + " "), size, document.createTextNode(" "), remove);
      attachmentList.appendChild(item);
    }

    async function render(inputs) {
      const to = document.querySelector(root.dataset.to || "#id_to");
      const body = { to: to ? to.value : "", inputs: inputs };
      if (root.dataset.conversation) body.conversation_id = root.dataset.conversation;
      const url = root.dataset.renderUrl.replace("00000000-0000-0000-0000-000000000000", chosen.dataset.responseId);
      status.textContent = "Inserting…";
      let answer;
      try {
        const reply = await fetch(url, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(root) },
          body: JSON.stringify(body),
        });
        answer = await reply.json();
        if (!reply.ok) {
          status.textContent = answer.detail || "The response could not be inserted.";
          return;
        }
      } catch (error) {
        status.textContent = "The response could not be inserted; check your connection.";
        return;
      }
      const event = new CustomEvent("postroom:response-inserted", { bubbles: true, cancelable: true, detail: answer });
      const target = document.querySelector(root.dataset.target || "#id_text");
      if (root.dispatchEvent(event) && target) {
        if (target.isContentEditable) insertHtml(target, answer.html); else insertText(target, answer.text);
        target.dispatchEvent(new Event("input", { bubbles: true }));
      }
      const subject = document.querySelector(root.dataset.subject || "#id_subject");
      if (subject && !subject.value.trim() && answer.subject) subject.value = answer.subject;
      answer.attachments.forEach(addAttachment);
      status.textContent = "";
      panel.hidden = true;
      opener.setAttribute("aria-expanded", "false");
      if (target) target.focus(); else opener.focus();
    }

    opener.addEventListener("click", () => (panel.hidden ? open() : close()));
    search.addEventListener("input", filter);
    root.addEventListener("keydown", (event) => {
      if (panel.hidden) return;
      if (event.key === "Escape") {
        event.preventDefault();
        if (chosen) { showList(); search.focus(); } else close();
        return;
      }
      if (event.target === search) {
        const visible = visibleOptions();
        const index = visible.indexOf(active);
        if (event.key === "ArrowDown") { event.preventDefault(); setActive(visible[Math.min(index + 1, visible.length - 1)] || null); }
        else if (event.key === "ArrowUp") { event.preventDefault(); setActive(visible[Math.max(index - 1, 0)] || null); }
        else if (event.key === "Enter") { event.preventDefault(); choose(active); }
      } else if (event.key === "Enter" && event.target.matches("input[data-label]")) {
        event.preventDefault(); // never submit the composer from here
        const fields = Array.from(inputsBox.querySelectorAll("input[data-label]"));
        const next = fields[fields.indexOf(event.target) + 1];
        if (next) next.focus(); else collectAndRender();
      }
    });
    list.addEventListener("click", (event) => choose(event.target.closest("[role=option]")));
    attachmentList.addEventListener("click", (event) => {
      const button = event.target.closest("[data-picker-detach]");
      if (button) button.closest("li").remove();
    });
  }

  function start() { document.querySelectorAll("[data-response-picker]").forEach(setUp); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
  // A composer swapped in by htmx (the conversation page's Reply) runs no scripts of its own.
  document.addEventListener("htmx:load", (event) => {
    const element = event.detail && event.detail.elt;
    if (!element || !element.querySelectorAll) return;
    if (element.matches("[data-response-picker]")) setUp(element);
    element.querySelectorAll("[data-response-picker]").forEach(setUp);
  });
})();
