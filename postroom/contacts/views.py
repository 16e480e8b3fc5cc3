"""Pages of the contacts app under ``/o/<slug>/contacts/``: parse → access → action → render.

Names, addresses and notes are written by members, by imported files and by whoever sends mail
(automatic contacts): every value is rendered through Django's auto-escaping, nothing is marked
safe. Exports are CSV through ``core.csv`` (R41). State changes are POST with CSRF.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from postroom.contacts import actions, selectors, transfer
from postroom.contacts.cards import Card
from postroom.contacts.forms import BookForm, ContactForm, ImportForm, MergeForm, RenameForm, ShareForm
from postroom.contacts.models import BookShare, ContactBook
from postroom.conversations import selectors as conversation_selectors
from postroom.orgs.models import Membership, Team
from postroom.orgs.selectors import membership_get

CONTACTS_PER_PAGE = 100


def _context(actor: Membership, **values: Any) -> dict[str, Any]:
    return {"organization": actor.organization, "nav": "contacts", **values}


def _teams_of(actor: Membership) -> list[tuple[int, str]]:
    return list(Team.objects.filter(organization_id=actor.organization_id, team_memberships__membership=actor).values_list("pk", "name"))


def _all_teams(actor: Membership) -> list[tuple[int, str]]:
    return list(Team.objects.filter(organization_id=actor.organization_id).values_list("pk", "name"))


def _team(actor: Membership, team_id: int | None) -> Team | None:
    if team_id is None:
        return None
    team = Team.objects.filter(organization_id=actor.organization_id, pk=team_id).first()
    if team is None:
        raise Http404
    return team


def _book_url(book: ContactBook, slug: str) -> HttpResponse:
    return redirect("contacts:book", slug=slug, book_id=book.pk)


@login_required
@require_http_methods(["GET", "POST"])
def book_list(request: HttpRequest, slug: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    form = BookForm(request.POST or None, teams=_teams_of(actor))
    if request.method == "POST" and form.is_valid():
        try:
            book = actions.book_create(
                actor=actor, name=form.cleaned_data["name"], kind=form.cleaned_data["kind"], team=_team(actor, form.cleaned_data["team"]),
                request=request,
            )  # fmt: skip
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, "Book created.")
            return _book_url(book, slug)
    books = list(selectors.books_visible(actor=actor).select_related("owner__user", "team"))
    for book in books:
        book.access = selectors.book_access(actor=actor, book=book)  # type: ignore[attr-defined]
    has_default = any(book.is_default and book.owner_id == actor.pk for book in books)
    return render(request, "contacts/books.html", _context(actor, books=books, form=form, has_default=has_default))


@login_required
@require_GET
def book_detail(request: HttpRequest, slug: str, book_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    book = selectors.book_get(actor=actor, book_id=book_id)
    access = selectors.book_access(actor=actor, book=book)
    query = request.GET.get("q", "")[:100]
    contacts = selectors.book_contacts_sorted(actor=actor, book=book, query=query)
    page = Paginator(contacts, CONTACTS_PER_PAGE).get_page(request.GET.get("page"))
    rows = [{"contact": contact, "card": Card.from_json(contact.card)} for contact in page.object_list]
    return render(request, "contacts/book.html", _context(actor, book=book, access=access, page=page, rows=rows, query=query))


@login_required
@require_http_methods(["GET", "POST"])
def book_settings(request: HttpRequest, slug: str, book_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    book = selectors.book_get(actor=actor, book_id=book_id)
    access = selectors.book_access(actor=actor, book=book)
    if request.method == "POST" and not access.manage:
        raise PermissionDenied("Only the book's owner (its team, or admins for the organization's book) can change the book itself.")
    rename = RenameForm(request.POST if request.POST.get("operation") == "rename" else None, initial={"name": book.name})
    share = ShareForm(request.POST if request.POST.get("operation") == "share" else None, teams=_all_teams(actor))
    if request.method == "POST":
        operation = request.POST.get("operation")
        try:
            if operation == "rename" and rename.is_valid():
                actions.book_rename(actor=actor, book=book, name=rename.cleaned_data["name"])
                messages.success(request, "Book renamed.")
                return redirect("contacts:book_settings", slug=slug, book_id=book.pk)
            if operation == "share" and share.is_valid():
                team = _team(actor, share.cleaned_data["team"])
                actions.book_share(actor=actor, book=book, team=team, can_write=share.cleaned_data["can_write"], request=request)
                messages.success(request, "Book shared.")
                return redirect("contacts:book_settings", slug=slug, book_id=book.pk)
            if operation == "unshare":
                team_id = request.POST.get("team") or None
                actions.book_unshare(actor=actor, book=book, team=_team(actor, int(team_id)) if team_id else None, request=request)
                messages.success(request, "Sharing removed.")
                return redirect("contacts:book_settings", slug=slug, book_id=book.pk)
            if operation == "delete":
                if book.is_default:
                    raise ValidationError("Your default book receives your automatic contacts; it cannot be deleted.")
                actions.book_delete(actor=actor, book=book, request=request)
                messages.success(request, "Book deleted.")
                return redirect("contacts:books", slug=slug)
            if operation not in {"rename", "share"}:
                return HttpResponseBadRequest("Unknown operation.")
        except (ValueError, ValidationError) as error:
            messages.error(request, " ".join(getattr(error, "messages", [str(error)])))
    shares = list(BookShare.objects.filter(book=book).select_related("team"))
    return render(
        request, "contacts/book_settings.html", _context(actor, book=book, access=access, rename=rename, share=share, shares=shares)
    )


@login_required
@require_http_methods(["GET", "POST"])
def contact_new(request: HttpRequest, slug: str, book_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    book = selectors.book_get(actor=actor, book_id=book_id)
    if not selectors.book_access(actor=actor, book=book).write:
        raise PermissionDenied("This book is shared with you read-only.")
    form = ContactForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        contact = actions.contact_create(actor=actor, book=book, card=form.cleaned_data["card"])
        messages.success(request, "Contact added.")
        return redirect("contacts:contact", slug=slug, contact_id=contact.pk)
    return render(request, "contacts/contact_edit.html", _context(actor, book=book, form=form, contact=None))


@login_required
@require_GET
def contact_detail(request: HttpRequest, slug: str, contact_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    contact = selectors.contact_get(actor=actor, contact_id=contact_id)
    access = selectors.book_access(actor=actor, book=contact.book)
    conversations = selectors.contact_conversations(actor=actor, contact=contact)
    return render(request, "contacts/contact.html", _context(
        actor, contact=contact, card=Card.from_json(contact.card), book=contact.book, access=access, conversations=conversations,
    ))  # fmt: skip


@login_required
@require_http_methods(["GET", "POST"])
def contact_edit(request: HttpRequest, slug: str, contact_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    contact = selectors.contact_get(actor=actor, contact_id=contact_id)
    if not selectors.book_access(actor=actor, book=contact.book).write:
        raise PermissionDenied("This book is shared with you read-only.")
    form = ContactForm(request.POST or None, initial=ContactForm.initial_from(Card.from_json(contact.card)))
    if request.method == "POST" and form.is_valid():
        actions.contact_update(actor=actor, contact=contact, card=form.cleaned_data["card"])
        messages.success(request, "Contact saved.")
        return redirect("contacts:contact", slug=slug, contact_id=contact.pk)
    return render(request, "contacts/contact_edit.html", _context(actor, book=contact.book, form=form, contact=contact))


@login_required
@require_POST
def contact_delete(request: HttpRequest, slug: str, contact_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    contact = selectors.contact_get(actor=actor, contact_id=contact_id)
    book = contact.book
    actions.contact_delete(actor=actor, contact=contact)
    messages.success(request, "Contact deleted.")
    return _book_url(book, slug)


@login_required
@require_POST
def contact_merge(request: HttpRequest, slug: str, contact_id: str) -> HttpResponse:
    """Keep ``contact_id``, fold the contact named in the form into it."""
    actor = membership_get(user=request.user, slug=slug)
    kept = selectors.contact_get(actor=actor, contact_id=contact_id)
    form = MergeForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("Choose the contact to merge.")
    merged = selectors.contact_get(actor=actor, contact_id=form.cleaned_data["other"])
    try:
        actions.contacts_merge(actor=actor, kept=kept, merged=merged, request=request)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, "Contacts merged.")
    return redirect("contacts:contact", slug=slug, contact_id=kept.pk)


@login_required
@require_GET
def book_duplicates(request: HttpRequest, slug: str, book_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    book = selectors.book_get(actor=actor, book_id=book_id)
    groups = [
        [{"contact": contact, "card": Card.from_json(contact.card)} for contact in group]
        for group in selectors.book_duplicates(actor=actor, book=book)
    ]
    access = selectors.book_access(actor=actor, book=book)
    return render(request, "contacts/duplicates.html", _context(actor, book=book, groups=groups, access=access))


@login_required
@require_http_methods(["GET", "POST"])
def book_import(request: HttpRequest, slug: str, book_id: str) -> HttpResponse:
    """A small file is imported at once (the report); a big one is queued as a task and this page
    then shows its progress, which it polls (htmx) until the import is done."""
    actor = membership_get(user=request.user, slug=slug)
    book = selectors.book_get(actor=actor, book_id=book_id)
    if not selectors.book_access(actor=actor, book=book).write:
        raise PermissionDenied("This book is shared with you read-only.")
    form = ImportForm(request.POST or None, request.FILES or None)
    report = None
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        if upload.size > transfer.MAX_IMPORT_BYTES:
            form.add_error(
                "file", f"The file is larger than {transfer.MAX_IMPORT_BYTES // (1024 * 1024)} MB; split it and import the parts."
            )
        else:
            content = upload.read()
            is_vcard = upload.name.lower().endswith((".vcf", ".vcard")) or content.lstrip()[:11].upper() == b"BEGIN:VCARD"
            try:
                started = transfer.book_import_start(
                    actor=actor, book=book, content=content, file_format="vcard" if is_vcard else "csv", request=request
                )
            except transfer.ImportRefusedError as error:
                form.add_error("file", error.messages)
            else:
                if not isinstance(started, transfer.ImportReport):
                    return redirect("contacts:book_import", slug=slug, book_id=book.pk)
                report = started
    running = selectors.book_import_latest(actor=actor, book=book) if report is None else None
    context = _context(actor, book=book, form=form, report=report, running=running, poll_seconds=1)
    if request.headers.get("HX-Request") and request.method == "GET":
        return render(request, "contacts/_import_progress.html", context)
    return render(request, "contacts/import.html", context)


@login_required
@require_POST
def book_export(request: HttpRequest, slug: str, book_id: str) -> StreamingHttpResponse:
    """A POST (a button), not a link: the export is audited, and a GET changes nothing (R52)."""
    actor = membership_get(user=request.user, slug=slug)
    book = selectors.book_get(actor=actor, book_id=book_id)
    response = StreamingHttpResponse(
        transfer.book_export_rows(actor=actor, book=book, request=request), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = 'attachment; filename="contacts.csv"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@require_POST
def contact_from_sender(request: HttpRequest, slug: str, message_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    message = conversation_selectors.message_get(actor=actor, message_id=message_id)
    try:
        contact, created = actions.contact_from_sender(actor=actor, message=message)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("conversations:detail", slug=slug, conversation_id=message.conversation_id)
    messages.success(request, "Contact created." if created else "The sender is already in your contacts.")
    return redirect("contacts:contact", slug=slug, contact_id=contact.pk)


@login_required
@require_GET
def autocomplete(request: HttpRequest, slug: str) -> JsonResponse:
    """``GET ?q=<prefix>`` → ``{"results": [{"name", "email", "contact_id", "book_id"}], "truncated": bool}``."""
    actor = membership_get(user=request.user, slug=slug)
    suggestions, truncated = selectors.contacts_autocomplete(actor=actor, query=request.GET.get("q", "")[:100])
    return JsonResponse({
        "results": [
            {"name": item.name, "email": item.email, "contact_id": str(item.contact_id), "book_id": str(item.book_id)} for item in suggestions
        ],
        "truncated": truncated,
    })  # fmt: skip
