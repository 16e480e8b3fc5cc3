"""Live updates: open pages hear within a second when mail arrives or a teammate acts.

How an event travels
    ``conversations.signals.conversation_event`` (sent after the commit; ids only) →
    ``live.receivers`` → ``live.bus`` (the database event log, or Redis pub/sub when
    ``REDIS_URL`` is set; see its docstring for why) → the ``live.hub`` of each web process
    (one listener, authorisation of every event for every stream in one query) →
    ``live.views.event_stream``, ``GET /o/<slug>/events/`` (server-sent events) →
    ``web/static/postroom/live.js`` in the page → DOM events → htmx re-fetches the fragments.
    Events carry a conversation id and a kind, never content.

Sending events (other apps)
    Send ``conversation_event`` after the commit (``transaction.on_commit``) with
    ``conversation_id``, ``organization_id``, ``kind`` (lowercase letters, digits and ``_``),
    ``actor_id`` and ``details``. Everyone who can see the conversation at delivery time receives
    it (``ConversationMember``), unless ``details["audience"]`` lists membership ids: then only
    those of them who can see it (use it for ``kind="notification"``). Personal labels go to
    their owner only.

Hooking a page in (templates)
    Every page of ``web/app_base.html`` inside an organization opens the stream by itself
    (``<main data-live-events=… data-live-after=…>``). Elements say what they show:

    - a list, a count, a view menu, anything about many conversations::

          <div id="inbox-list" hx-get="{{ request.get_full_path }}" hx-trigger="postroom:list from:body"
               hx-select="#inbox-list" hx-swap="outerHTML">…</div>

    - one conversation (its messages, timeline, assignees, labels)::

          <section data-live-conversation="{{ conversation.pk }}" hx-get="…" hx-trigger="postroom:conversation" …>

    - the notification bell: ``hx-trigger="postroom:notification from:body"``.

    ``postroom:list`` is fired 150 ms after a change and at most once a second during a burst,
    whatever the number of events;
    ``postroom:conversation`` carries ``detail.conversation`` and ``detail.kinds``;
    ``postroom:resync`` (after a long disconnect) also fires the others for every element, so no
    element needs to listen to it. ``postroom:event`` gives every event as it comes. A fragment
    with ``hx-select`` needs no partial template; a view may still answer htmx requests with one.
"""
