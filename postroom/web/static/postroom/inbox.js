// The team inbox in the browser: keyboard shortcuts, list selection, menus, the composer's
// autosave, toasts and local times. Every page works without it (forms post, links navigate);
// this file only makes them faster. No inline handlers, no eval: it runs under our nonce CSP.
(() => {
  "use strict";

  const LIST_STORE = "postroom:list";
  const AUTOSAVE_DELAY = 2500;
  const TOAST_SECONDS = 6;

  // --- helpers -------------------------------------------------------------------------------------
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  function typing(target) {
    if (!(target instanceof Element)) return false;
    if (target.isContentEditable) return true;
    const tag = target.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT") return true;
    if (tag !== "INPUT") return false;
    return !["checkbox", "radio", "button", "submit", "reset", "file"].includes(target.type);
  }

  function csrfToken() {
    const holder = document.body.getAttribute("hx-headers");
    try {
      return JSON.parse(holder || "{}")["X-CSRFToken"] || "";
    } catch (error) {
      return "";
    }
  }

  function toast(text, tone) {
    const box = $("#toasts");
    if (!box) return;
    const item = document.createElement("div");
    item.className = tone === "error" ? "toast toast-error" : "toast";
    item.setAttribute("role", tone === "error" ? "alert" : "status");
    item.dataset.toast = "";
    item.textContent = text;
    box.appendChild(item);
    dismissLater(item);
  }

  function dismissLater(item) {
    if (item.dataset.leaving) return;
    item.dataset.leaving = "1";
    setTimeout(() => {
      item.classList.add("is-leaving");
      setTimeout(() => item.remove(), 400);
    }, TOAST_SECONDS * 1000);
  }

  // --- local times --------------------------------------------------------------------------------
  const sameDay = (a, b) => a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  const dayFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
  const yearFormat = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric" });
  const longFormat = new Intl.DateTimeFormat(undefined, { weekday: "short", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });

  function localizeTimes(root) {
    const now = new Date();
    $$("time[data-time]", root).forEach((element) => {
      const moment = new Date(element.getAttribute("datetime"));
      if (Number.isNaN(moment.getTime())) return;
      element.title = longFormat.format(moment);
      if (element.dataset.time === "short") {
        element.textContent = sameDay(moment, now)
          ? timeFormat.format(moment)
          : moment.getFullYear() === now.getFullYear() ? dayFormat.format(moment) : yearFormat.format(moment);
      } else {
        element.textContent = longFormat.format(moment);
      }
    });
  }

  function fillTimezoneOffsets(root) {
    const offset = String(new Date().getTimezoneOffset());
    $$("input[data-timezone-offset]", root).forEach((input) => { input.value = offset; });
    // When each snooze preset ends, computed as the server does (conversations.forms).
    const now = new Date();
    const hints = {
      later_today: new Date(now.getFullYear(), now.getMonth(), now.getDate(), now.getHours() + 3),
      tomorrow: new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1, 9),
      next_week: new Date(now.getFullYear(), now.getMonth(), now.getDate() + (7 - ((now.getDay() + 6) % 7)), 9),
    };
    $$("[data-snooze-hint]", root).forEach((hint) => {
      const moment = hints[hint.dataset.snoozeHint];
      if (moment) hint.textContent = sameDay(moment, now) ? timeFormat.format(moment) : longFormat.format(moment);
    });
  }

  // --- lists --------------------------------------------------------------------------------------
  function listRows() {
    return $$("#conversation-list [data-row]").filter((row) => !row.classList.contains("row-hidden"));
  }

  function selectedRow() {
    const row = $("#conversation-list [data-row].is-selected");
    return row && !row.classList.contains("row-hidden") ? row : null;
  }

  // The selected conversation, by URL and place, so that it survives the list being redrawn (a
  // live update swaps the whole list region) and a row leaving it.
  let selected = { url: null, index: 0 };

  function selectRow(row, focus = true) {
    $$("#conversation-list [data-row].is-selected").forEach((other) => other.classList.remove("is-selected"));
    if (!row) return;
    selected = { url: row.dataset.url, index: Math.max(0, listRows().indexOf(row)) };
    row.classList.add("is-selected");
    const link = row.querySelector("[data-row-link]");
    if (focus && link) link.focus({ preventScroll: true });
    row.scrollIntoView({ block: "nearest" });
  }

  function moveInList(step) {
    const rows = listRows();
    if (!rows.length) return;
    const current = selectedRow();
    let index = current ? rows.indexOf(current) + step : step > 0 ? 0 : rows.length - 1;
    index = Math.max(0, Math.min(rows.length - 1, index));
    selectRow(rows[index]);
  }

  function rememberList() {
    const region = $("[data-list]");
    if (!region) return;
    const urls = $$("#conversation-list [data-row]").map((row) => row.dataset.url);
    const state = { key: region.dataset.listKey, url: region.dataset.listUrl, urls };
    try {
      sessionStorage.setItem(LIST_STORE, JSON.stringify(state));
    } catch (error) {
      // Private mode or a full store: j/k on the conversation page then just goes back to the list.
    }
  }

  function rememberedList() {
    try {
      return JSON.parse(sessionStorage.getItem(LIST_STORE) || "null");
    } catch (error) {
      return null;
    }
  }

  function rowAction(row, action) {
    if (!row || !window.htmx) return Promise.resolve();
    const region = $("[data-list]");
    const rows = listRows();
    const index = rows.indexOf(row);
    const url = row.dataset.url;
    // Where the selection goes if the row leaves the view: the next row, else the previous one.
    const follower = rows[index + 1] || rows[index - 1] || null;
    const values = { list: region ? region.dataset.listKey : "inbox" };
    if (action === "read" || action === "unread") values.state = action;
    const path = action === "unread" ? "read" : action;
    return htmx.ajax("POST", `${url}${path}/`, { source: row, target: row, swap: "outerHTML", values })
      .then(() => whenGone(row))
      .then(() => {
        const after = listRows();
        const again = after.find((candidate) => candidate.dataset.url === url);
        const next = follower && after.find((candidate) => candidate.dataset.url === follower.dataset.url);
        if (after.length) selectRow(again || next || after[Math.min(index, after.length - 1)]);
        rememberList();
      });
  }

  // After a redraw of the list, select the same conversation again, or the one now in its place.
  function keepSelection() {
    if (selectedRow()) return;
    const rows = listRows();
    if (!rows.length) return;
    const same = rows.find((row) => row.dataset.url === selected.url);
    selectRow(same || rows[Math.min(selected.index, rows.length - 1)], false);
  }

  // The promise of htmx.ajax can settle before its swap: wait until the old row has left the page
  // (replaced by its new version, or removed because it left the view). A loaded server can take
  // seconds; after ten the selection moves on regardless.
  function whenGone(element, tries = 400) {
    return new Promise((resolve) => {
      const check = (left) => {
        if (!element.isConnected || left <= 0) resolve();
        else setTimeout(() => check(left - 1), 25);
      };
      check(tries);
    });
  }

  function updateBulkCount() {
    const region = $("[data-list]");
    if (!region) return;
    const checked = $$("[data-row-check]:checked", region).length;
    const label = $("[data-bulk-count]", region);
    if (label) label.textContent = checked ? `${checked} selected` : "Select";
    const all = $("[data-select-all]", region);
    if (all) {
      const boxes = $$("[data-row-check]", region);
      all.checked = boxes.length > 0 && checked === boxes.length;
      all.indeterminate = checked > 0 && checked < boxes.length;
    }
  }

  function filterList(text) {
    const words = text.toLowerCase().split(/\s+/).filter(Boolean);
    $$("#conversation-list [data-row]").forEach((row) => {
      const haystack = row.textContent.toLowerCase();
      row.classList.toggle("row-hidden", !words.every((word) => haystack.includes(word)));
    });
    if (!selectedRow()) selectRow(listRows()[0] || null, false);
  }

  // --- the conversation page ------------------------------------------------------------------------
  function conversationPage() {
    return $("[data-conversation]");
  }

  function neighbour(step) {
    const page = conversationPage();
    const state = rememberedList();
    if (!page || !state || !Array.isArray(state.urls)) return null;
    const index = state.urls.indexOf(page.dataset.url);
    if (index < 0) return null;
    return state.urls[index + step] || null;
  }

  function openConversation(url) {
    const state = rememberedList();
    const key = state && state.key ? `?list=${encodeURIComponent(state.key)}` : "";
    window.location.assign(url + key);
  }

  function backToList() {
    const page = conversationPage();
    const back = page ? $("[data-back]", page) : null;
    if (back) window.location.assign(back.href);
  }

  function setUpNeighbours() {
    const holder = $("[data-neighbours]");
    if (!holder) return;
    const previous = neighbour(-1);
    const next = neighbour(1);
    if (!previous && !next) return;
    holder.hidden = false;
    $$("[data-neighbour]", holder).forEach((link) => {
      const target = link.dataset.neighbour === "next" ? next : previous;
      if (target) {
        link.href = target;
      } else {
        link.setAttribute("aria-disabled", "true");
        link.removeAttribute("href");
      }
    });
  }

  function pageAction(action) {
    const page = conversationPage();
    if (!page) return;
    const button = $(`[data-action="${action}"]`, page);
    if (!button) return;
    if (action === "archive" || action === "trash" || action === "spam") {
      // Done with it: on to the next conversation, as a mail client does.
      const form = button.closest("form");
      const next = neighbour(1);
      const url = form.getAttribute("action");
      htmx.ajax("POST", url, { source: form, swap: "none" }).then(() => {
        if (next) openConversation(next);
        else backToList();
      });
      return;
    }
    button.click();
  }

  function openMenu(name) {
    const menu = $(`details[data-menu="${name}"]`);
    if (!menu) return;
    closeMenus(menu);
    menu.open = true;
    const first = $("[data-menu-filter]", menu) || $("button, input, select, a", $(".menu-panel", menu));
    if (first) first.focus();
  }

  function closeMenus(except) {
    $$("details.menu[open]").forEach((menu) => {
      if (menu !== except) menu.open = false;
    });
  }

  function compose(kind) {
    const page = conversationPage();
    const existing = $("#composer-body");
    if (existing) {
      existing.focus();
      return;
    }
    const link = page ? $(`[data-compose="${kind}"]`, page) : null;
    if (link) link.click();
  }

  // --- composer: drafts saved as you type -------------------------------------------------------------
  const composers = new WeakMap();

  function composerState(form) {
    let state = composers.get(form);
    if (!state) {
      state = { timer: null, dirty: false, saving: Promise.resolve(), sending: false };
      composers.set(form, state);
    }
    return state;
  }

  function saveDraft(form, withFiles) {
    const state = composerState(form);
    clearTimeout(state.timer);
    if (state.sending) return state.saving;
    state.dirty = false;
    state.saving = state.saving.then(() => {
      if (state.sending) return null;
      const data = new FormData(form);
      data.delete("close");
      data.delete("intent");
      if (!withFiles) data.delete("attachments");
      return fetch(form.dataset.autosaveUrl, {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(), "HX-Request": "true" },
      }).then((response) => response.text().then((html) => {
        const status = $("#draft-status", form);
        // 200, and 413/422 with the reason, are the composer's status line; anything else (a
        // plain-text limit from the server's edge, an error page) is said in it as text.
        if (status && ![200, 413, 422].includes(response.status)) {
          const plain = (response.headers.get("Content-Type") || "").startsWith("text/plain");
          status.textContent = plain && html.trim() ? `Not saved: ${html.trim()}` : `Not saved (the server answered ${response.status}). Reload the page and try again.`;
          status.classList.add("composer-status-error");
        } else if (status && window.htmx) htmx.swap(status, html, { swapStyle: "outerHTML" });
        if (withFiles) {
          const input = $("[data-attach]", form);
          if (input) input.value = "";
        }
        localizeTimes(form);
      })).catch(() => {
        const status = $("#draft-status", form);
        if (status) status.textContent = "Not saved: the server cannot be reached. Keep this page open.";
      });
    });
    return state.saving;
  }

  // Files over the upload limit are refused here, before megabytes travel only to be refused.
  function attachmentsFit(form, input) {
    const limit = Number(input.dataset.maxBytes || 0);
    const total = Array.from(input.files).reduce((sum, file) => sum + file.size, 0);
    if (!limit || total <= limit) return true;
    const megabytes = (bytes) => `${Math.ceil(bytes / (1024 * 1024))} MB`;
    const status = $("#draft-status", form);
    if (status) {
      status.textContent = `Not attached: the files you chose total ${megabytes(total)}; attachments may total at most ${megabytes(limit)}.`;
      status.classList.add("composer-status-error");
    }
    input.value = "";
    return false;
  }

  function scheduleSave(form) {
    const state = composerState(form);
    state.dirty = true;
    clearTimeout(state.timer);
    state.timer = setTimeout(() => saveDraft(form, false), AUTOSAVE_DELAY);
  }

  document.addEventListener("input", (event) => {
    const form = event.target.closest("form[data-autosave-url]");
    if (form && event.target.type !== "file") scheduleSave(form);
    if (event.target.matches("[data-list-filter]")) filterList(event.target.value);
    if (event.target.matches("[data-menu-filter]")) {
      const words = event.target.value.toLowerCase();
      $$("[data-filter-text]", event.target.closest(".menu-panel")).forEach((item) => {
        item.hidden = !item.dataset.filterText.toLowerCase().includes(words);
      });
    }
  });

  document.addEventListener("change", (event) => {
    const form = event.target.closest("form[data-autosave-url]");
    if (form && event.target.matches("[data-attach]") && event.target.files.length) {
      if (attachmentsFit(form, event.target)) saveDraft(form, true);
    }
    else if (form && event.target.tagName === "SELECT") scheduleSave(form);
    if (event.target.matches("[data-row-check]")) updateBulkCount();
    if (event.target.matches("[data-select-all]")) {
      $$("[data-row-check]", event.target.closest("[data-list]")).forEach((box) => {
        if (!box.closest("[data-row]").classList.contains("row-hidden")) box.checked = event.target.checked;
      });
      updateBulkCount();
    }
    const autosubmit = event.target.closest("form[data-autosubmit]");
    if (autosubmit) autosubmit.requestSubmit();
  });

  document.addEventListener("focusout", (event) => {
    const form = event.target.closest("form[data-autosave-url]");
    if (form && composerState(form).dirty && !form.contains(event.relatedTarget)) saveDraft(form, false);
  });

  // Sending waits for a save in flight (so the draft it created is the one sent and deleted),
  // and no save starts after it.
  document.addEventListener("htmx:confirm", (event) => {
    const form = event.detail.elt;
    if (!(form instanceof HTMLFormElement) || !form.dataset.autosaveUrl) return;
    const state = composerState(form);
    event.preventDefault();
    clearTimeout(state.timer);
    state.saving.then(() => {
      state.sending = true;
      event.detail.issueRequest(true);
    });
  });

  document.addEventListener("htmx:afterRequest", (event) => {
    const form = event.detail.elt;
    if (form instanceof HTMLFormElement && form.dataset.autosaveUrl && !event.detail.successful) {
      composerState(form).sending = false;
    }
  });

  // --- htmx: errors come back as toasts; 422 carries a form with its errors ----------------------------
  document.addEventListener("htmx:beforeSwap", (event) => {
    const status = event.detail.xhr.status;
    if (status === 422 || (status === 403 && event.detail.xhr.getResponseHeader("HX-Retarget"))) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  document.addEventListener("htmx:responseError", (event) => {
    const status = event.detail.xhr.status;
    if (status === 422 || (status === 403 && event.detail.xhr.getResponseHeader("HX-Retarget"))) return;
    const xhr = event.detail.xhr;
    const plain = (xhr.getResponseHeader("Content-Type") || "").startsWith("text/plain");
    const text = status === 404 ? "Not found: it may have been deleted, or you can no longer see it."
      : status === 403 ? "You are not allowed to do this."
        : status === 413 && plain && xhr.responseText.trim() ? xhr.responseText.trim()
        : `Something went wrong (${status}). Reload the page and try again.`;
    toast(text, "error");
  });

  document.addEventListener("htmx:sendError", () => toast("The server cannot be reached. Check the connection and try again.", "error"));

  // The conversation's header (its menus: assign, labels, snooze, share) is redrawn out of band by
  // every action's answer and every live update, and the page's own "read once shown" comes back
  // half a second after it opens, just when the member reaches for a menu. A menu open in the old
  // header is carried into the new one as it is (its filter, what it shows, the focus) instead of
  // closing under the pointer; the choice made in it redraws it.
  let keptMenu = null;
  document.addEventListener("htmx:beforeRequest", (event) => {
    const chosenIn = event.target instanceof Element ? event.target.closest("details[data-menu][open]") : null;
    if (chosenIn) chosenIn.open = false; // the answer's header is drawn with it closed
  });

  document.addEventListener("htmx:oobBeforeSwap", (event) => {
    const menu = $("details[data-menu][open]", event.detail.target);
    const fresh = menu ? event.detail.fragment.querySelector(`details[data-menu="${menu.dataset.menu}"]`) : null;
    if (!fresh) return;
    keptMenu = { menu: menu, focused: menu.contains(document.activeElement) ? document.activeElement : null };
    fresh.replaceWith(menu);
  });

  document.addEventListener("htmx:oobAfterSwap", () => {
    if (!keptMenu) return;
    const state = keptMenu;
    keptMenu = null;
    if (state.focused && state.menu.isConnected) state.focused.focus();
  });

  // A live update redraws the whole list region: what the member was doing in it (a filter being
  // typed, boxes ticked for a bulk action) carries over to the new one.
  let carried = null;
  document.addEventListener("htmx:beforeSwap", (event) => {
    const target = event.detail.target;
    // The event fires on the target; the element that asked is in the request's config.
    const source = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (!target || target.id !== "list-region" || !(source instanceof Element) || !source.matches("[data-live-list]")) return;
    const filter = $("#list-filter", target);
    carried = {
      filter: filter ? filter.value : "",
      focused: filter !== null && document.activeElement === filter,
      checked: $$("[data-row-check]:checked", target).map((box) => box.closest("[data-row]").dataset.url),
    };
  });

  function restoreCarried(region) {
    if (!carried) return;
    const state = carried;
    carried = null;
    $$("[data-row]", region).forEach((row) => {
      const box = $("[data-row-check]", row);
      if (box && state.checked.includes(row.dataset.url)) box.checked = true;
    });
    const filter = $("#list-filter", region);
    if (filter && state.filter) {
      filter.value = state.filter;
      filterList(state.filter);
    }
    if (filter && state.focused) filter.focus({ preventScroll: true });
  }

  document.addEventListener("htmx:load", (event) => {
    const root = event.detail.elt;
    if (root instanceof Element && root.id === "list-region") {
      keepSelection();
      restoreCarried(root);
    }
    setUp(root);
  });

  // A composer that was just asked for (a reply button or r, R, f) takes the keyboard.
  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target && event.detail.target.id === "composer-slot") {
      const body = $("#composer-body", event.detail.target);
      if (body) {
        body.focus();
        body.setSelectionRange(0, 0);
        body.scrollIntoView({ block: "center" });
      }
    }
  });

  // --- clicks -----------------------------------------------------------------------------------------
  document.addEventListener("click", (event) => {
    const opener = event.target.closest("[data-shortcuts-open]");
    if (opener) showShortcuts();
    const closer = event.target.closest("[data-dialog-close]");
    if (closer) closer.closest("dialog").close();
    const menuOpener = event.target.closest("[data-open-menu]");
    if (menuOpener) openMenu(menuOpener.dataset.openMenu);
    const rowButton = event.target.closest("[data-row-action]");
    if (rowButton) rowAction(rowButton.closest("[data-row]"), rowButton.dataset.rowAction);
    const row = event.target.closest("#conversation-list [data-row]");
    if (row && !rowButton) selectRow(row, false);
    // A click outside an open menu closes it.
    if (!event.target.closest("details.menu")) closeMenus(null);
  });

  document.addEventListener("toggle", (event) => {
    const menu = event.target;
    if (menu instanceof HTMLDetailsElement && menu.classList.contains("menu") && menu.open) {
      closeMenus(menu);
      const filter = $("[data-menu-filter]", menu);
      if (filter) filter.focus();
    }
  }, true);

  function showShortcuts() {
    const dialog = $("#shortcuts-dialog");
    if (dialog && !dialog.open) dialog.showModal();
  }

  // --- keyboard -----------------------------------------------------------------------------------------
  let pendingG = false;

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      const open = $("details.menu[open]");
      if (open) {
        open.open = false;
        $("summary", open).focus();
        event.preventDefault();
        return;
      }
      if (event.target.matches && event.target.matches("[data-list-filter]") && event.target.value) {
        event.target.value = "";  // the first Escape clears the filter, the second leaves the field
        filterList("");
        event.preventDefault();
        return;
      }
      if (typing(event.target)) {
        event.target.blur();
        return;
      }
    }
    const form = event.target.closest ? event.target.closest("form[data-autosave-url]") : null;
    if (form && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
      return;
    }
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    if ($("dialog[open]")) return;
    const key = event.key;
    if (pendingG) {
      pendingG = false;
      if (key === "i") {
        const inbox = $("#inbox-nav [data-nav-key='inbox']");
        if (inbox) window.location.assign(inbox.href);
        event.preventDefault();
        return;
      }
    }
    const onList = Boolean($("#conversation-list"));
    const page = conversationPage();
    let handled = true;
    switch (key) {
      case "?":
        showShortcuts();
        break;
      case "g":
        pendingG = true;
        setTimeout(() => { pendingG = false; }, 1200);
        break;
      case "/": {
        const filter = $("[data-list-filter]");
        if (filter) filter.focus();
        else if (page) backToList();
        else handled = false;
        break;
      }
      case "n": {
        const link = $("[data-shortcut-new]");
        if (link) window.location.assign(link.href);
        else handled = false;
        break;
      }
      case "j":
      case "k":
        if (onList) moveInList(key === "j" ? 1 : -1);
        else if (page) {
          const target = neighbour(key === "j" ? 1 : -1);
          if (target) openConversation(target);
        } else handled = false;
        break;
      case "Enter":
      case "o":
        if (onList && selectedRow()) openConversation(selectedRow().dataset.url);
        else handled = false;
        break;
      case "x":
        if (onList && selectedRow()) {
          const box = $("[data-row-check]", selectedRow());
          box.checked = !box.checked;
          updateBulkCount();
        } else handled = false;
        break;
      case "e":
      case "#":
      case "!": {
        const action = key === "e" ? "archive" : key === "#" ? "trash" : "spam";
        if (onList && selectedRow()) rowAction(selectedRow(), action);
        else if (page) pageAction(action);
        else handled = false;
        break;
      }
      case "U":
        if (onList && selectedRow()) rowAction(selectedRow(), "unread");
        else if (page) pageAction("unread");
        else handled = false;
        break;
      case "u":
        if (page) backToList();
        else handled = false;
        break;
      case "a":
      case "l":
      case "s": {
        const menu = key === "a" ? "assign" : key === "l" ? "labels" : "snooze";
        if (page) openMenu(menu);
        else if (onList && selectedRow()) window.location.assign(`${selectedRow().dataset.url}?list=${encodeURIComponent($("[data-list]").dataset.listKey)}&open=${menu}`);
        else handled = false;
        break;
      }
      case "r":
      case "R":
      case "f": {
        const kind = key === "f" ? "forward" : key === "R" ? "reply_all" : "reply";
        if (page) compose(kind);
        else if (onList && selectedRow()) window.location.assign(`${selectedRow().dataset.url}?compose=${kind}#composer`);
        else handled = false;
        break;
      }
      case "c": {
        const box = $("#comment-body");
        if (box) box.focus();
        else handled = false;
        break;
      }
      default:
        handled = false;
    }
    if (handled) event.preventDefault();
  });

  // --- start --------------------------------------------------------------------------------------------
  function setUp(root) {
    localizeTimes(root);
    fillTimezoneOffsets(root);
    $$("[data-row-actions]", root).forEach((actions) => { actions.hidden = false; });
    $$("[data-js-hide]", root).forEach((element) => { element.hidden = true; });
    $$("[data-toast], .content-inbox > .messages .alert", root).forEach(dismissLater);
    if (root === document || root.querySelector?.("[data-row]") || root.matches?.("[data-list], [data-row]")) {
      rememberList();
      updateBulkCount();
      if (root !== document) keepSelection();
    }
  }

  function start() {
    setUp(document);
    setUpNeighbours();
    const wanted = new URLSearchParams(window.location.search).get("open");
    if (wanted && conversationPage()) openMenu(wanted);
    if (window.location.hash === "#composer") {
      const body = $("#composer-body");
      if (body) body.focus();
    }
    const rows = listRows();
    if (rows.length && !selectedRow()) selectRow(rows[0], false);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
