// Live updates (postroom/live): open pages of an organization hear within a second when mail
// arrives or a teammate acts, and re-fetch what they show through htmx. Without this file (or
// without EventSource) every page still works; it just does not update by itself.
//
// Where the stream is: the element with data-live-events (app_base.html's <main>), plus
// data-live-after, the position the page was rendered at, so nothing in between is missed.
//
// One stream serves every tab of this browser for an organization: the tab holding a Web Lock
// opens the EventSource and passes what it hears to the other tabs over a BroadcastChannel.
// (Over HTTP/1.1 a browser opens at most six connections to a site: a stream per tab would soon
// keep pages from loading.) When that tab closes, another takes the lock and carries on from
// the last position it heard of.
//
// What pages listen to (dispatched on <body>; none of them bubbles):
//   postroom:list           something changed in a conversation the member can see
//                           (coalesced: 150 ms after the first change, then at most once a
//                           second during a burst) — lists, counts, view menus:
//                             hx-trigger="postroom:list from:body"
//   postroom:conversation   detail {conversation: "<uuid>", kinds: [...]} for each conversation
//                           that changed; also dispatched on every element that declares
//                           data-live-conversation="<uuid>" for that conversation:
//                             <section data-live-conversation="{{ conversation.pk }}"
//                                      hx-get="…" hx-trigger="postroom:conversation" …>
//   postroom:notification   a notification for the member arrived (kind "notification"):
//                             hx-trigger="postroom:notification from:body"
//   postroom:resync         updates may have been missed (a long disconnect): postroom:list,
//                           postroom:notification and every data-live-conversation element's
//                           postroom:conversation fire as well, so elements need not listen to it
//   postroom:event          every event as it comes, detail {conversation, kind}, uncoalesced
// <html data-live-state="…"> says "connecting", "live" (this tab streams), "following" (another
// tab streams for it) or "off".
(() => {
  "use strict";
  const holder = document.querySelector("[data-live-events]");
  if (!holder || !("EventSource" in window)) return;
  const root = document.documentElement;
  const url = holder.dataset.liveEvents;
  let lastId = holder.dataset.liveAfter || "";
  // The first change shows after FLUSH_MS; during a burst (an import, a bulk action) pages
  // refresh at most once every GAP_MS, however many events come.
  const FLUSH_MS = 150;
  const GAP_MS = 1000;
  let flushedAt = 0;

  // Coalescing: a burst of events (an import, a bulk action) becomes one refresh per target.
  const pending = new Map();
  let listChanged = false;
  let notified = false;
  let timer = null;

  function fire(target, name, detail) {
    target.dispatchEvent(new CustomEvent(name, { detail: detail, bubbles: false }));
  }

  function note(conversation, kind) {
    if (!pending.has(conversation)) pending.set(conversation, new Set());
    pending.get(conversation).add(kind);
  }

  function flush() {
    timer = null;
    flushedAt = Date.now();
    for (const [conversation, kinds] of pending) {
      const detail = { conversation: conversation, kinds: Array.from(kinds) };
      fire(document.body, "postroom:conversation", detail);
      document.querySelectorAll("[data-live-conversation]").forEach((element) => {
        if (element.dataset.liveConversation === conversation) fire(element, "postroom:conversation", detail);
      });
    }
    pending.clear();
    if (listChanged) fire(document.body, "postroom:list", {});
    if (notified) fire(document.body, "postroom:notification", {});
    listChanged = notified = false;
  }

  function handle(message) {
    if (message.id) lastId = message.id;
    if (message.type === "conversation") {
      const conversation = String(message.data.conversation);
      const kind = String(message.data.kind);
      fire(document.body, "postroom:event", { conversation: conversation, kind: kind });
      note(conversation, kind);
      listChanged = true;
      if (kind === "notification") notified = true;
    } else if (message.type === "resync") {
      fire(document.body, "postroom:resync", {});
      document.querySelectorAll("[data-live-conversation]").forEach((element) => note(element.dataset.liveConversation, "resync"));
      listChanged = notified = true;
    } else {
      return;
    }
    if (timer === null) timer = setTimeout(flush, Math.max(FLUSH_MS, flushedAt + GAP_MS - Date.now()));
  }

  // Re-fetches this file triggers are not the person's activity: they must not keep an idle
  // session alive (accounts/middleware.py).
  document.body.addEventListener("htmx:configRequest", (event) => {
    const trigger = event.detail.triggeringEvent;
    if (trigger && trigger.type.startsWith("postroom:")) event.detail.headers["X-Postroom-Automatic"] = "live";
  });

  const channel = "BroadcastChannel" in window ? new BroadcastChannel(`postroom-live ${url}`) : null;
  if (channel) channel.onmessage = (event) => handle(event.data);

  function share(message) {
    handle(message);
    if (channel) channel.postMessage(message);
  }

  // Streams until the page goes away; never resolves, so the Web Lock stays with this tab.
  function stream() {
    return new Promise(() => {
      let delay = 2000;
      let source = null;
      const open = () => {
        root.dataset.liveState = "connecting";
        source = new EventSource(lastId ? `${url}?after=${encodeURIComponent(lastId)}` : url);
        source.addEventListener("ready", (event) => {
          delay = 2000;
          root.dataset.liveState = "live";
          share({ type: "ready", id: event.lastEventId });
        });
        source.addEventListener("conversation", (event) => {
          share({ type: "conversation", id: event.lastEventId, data: JSON.parse(event.data) });
        });
        source.addEventListener("resync", (event) => share({ type: "resync", id: event.lastEventId }));
        source.addEventListener("error", () => {
          // The browser reconnects by itself after a dropped connection (sending Last-Event-ID).
          // It gives up on an HTTP error (a proxy's 502 while the server restarts, a 429, the
          // sign-in page once the session has ended): try again, less and less often.
          if (source.readyState !== EventSource.CLOSED) return;
          root.dataset.liveState = "off";
          setTimeout(open, delay);
          delay = Math.min(delay * 2, 120000);
        });
      };
      open();
    });
  }

  if (navigator.locks && channel) {
    root.dataset.liveState = "following";
    navigator.locks.request(`postroom-live ${url}`, stream);
  } else {
    stream();
  }
})();
