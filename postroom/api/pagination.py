"""Cursor pagination for the API's list endpoints: stable pages over (sort key, id).

A list endpoint returns ``{"items": [...], "next": "<cursor>" | null}``; the client passes
``next`` back as ``?cursor=`` to get the following page, until ``next`` is null. ``limit``
(1 to ``MAX_LIMIT``, default ``DEFAULT_LIMIT``) sets the page size.

Pages are keyset pages, not offsets: a cursor holds the sort values of the last item shown, and
the next page is "everything after that item in this order". Rows inserted or deleted while a
client is paging do not shift the pages (nothing is skipped or repeated that was there the
whole time), and a page costs the same at any depth, given an index on the order.

Cursors are opaque to clients and signed (``django.core.signing``, with the list's name in the
salt): a cursor cannot be forged or edited, and one list's cursor is refused by another (422).
A cursor only continues an order; which rows the client may see is decided by the queryset the
endpoint passes in, scoped to the actor as always, so a cursor never widens access.

Use it like this::

    from ninja import Query

    from postroom.api.pagination import Page, PageParams, paginate

    class ConversationPage(Page[ConversationOut]):
        "One page of conversations, newest activity first."

    @router.get("/orgs/{slug}/conversations", response={200: ConversationPage, **ERRORS})
    def conversation_list(request, slug: str, page: Query[PageParams]) -> ConversationPage:
        actor = membership_get(user=request.user, slug=slug)
        paged = paginate(
            conversations_visible_to(actor=actor),   # the scoped queryset (filters applied)
            order=("-last_message_at", "-id"),       # sort fields; "id" is added when missing
            params=page,
            key="conversations",                     # names the list: cursors are bound to it
        )
        return ConversationPage(items=[conversation_out(c) for c in paged.items], next=paged.next)

Sort fields may follow relations (``"user__email"``) and be descending (``"-created_at"``); each
must be non-null, and the last one must be unique (``id`` is appended when it is not there). A
sort field may also name an annotation of the queryset, e.g. ``Coalesce("sent_at", "created_at")``
annotated as ``"sort_at"``, to order by a nullable column; its ``output_field`` reads the cursor.
Endpoints that take filters keep them as their own query parameters next to ``page``; clients
send the same filters with each cursor.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any, Generic, TypeVar

from django.core import signing
from django.core.exceptions import ValidationError
from django.db.models import Field, Model, Q, QuerySet
from ninja import Field as SchemaField
from ninja import Schema

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
CURSOR_SALT = "postroom.api.cursor"
BAD_CURSOR = "Use the `next` value of a previous page of this list as the cursor."

ItemT = TypeVar("ItemT")
ModelT = TypeVar("ModelT", bound=Model)


class PageParams(Schema):
    cursor: str | None = SchemaField(
        None, max_length=2048, description="The `next` value of the previous page; leave out for the first page."
    )
    limit: int = SchemaField(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"Items per page, 1 to {MAX_LIMIT}.")


class Page(Schema, Generic[ItemT]):
    """Subclass it with a name for each list (``class TeamPage(Page[TeamOut])``): the name is
    what the OpenAPI document calls the schema."""

    items: list[ItemT]
    next: str | None = SchemaField(description="Pass as `cursor` to get the next page; null on the last page.")


@dataclass(frozen=True)
class Paged(Generic[ModelT]):
    items: list[ModelT]
    next: str | None


@dataclass(frozen=True)
class _SortField:
    path: str  # "user__email", or the name of an annotation
    descending: bool
    field: Field[Any, Any]

    def value_of(self, item: Model) -> Any:
        value: Any = item
        for part in self.path.split("__"):
            value = getattr(value, part)
        if isinstance(value, Model):
            value = value.pk
        return value


def _model_field(model: type[Model], path: str) -> Field[Any, Any]:
    """The model field at the end of ``path`` ("user__email" → User.email)."""
    *relations, last = path.split("__")
    current = model
    for name in relations:
        related = current._meta.get_field(name).related_model
        if related is None or isinstance(related, str):
            raise ValueError(f"{path}: {name} is not a relation")
        current = related
    field = current._meta.get_field(last)
    if not isinstance(field, Field):
        raise ValueError(f"{path} is not a column")
    return field


def _sort_fields(queryset: QuerySet[Any], order: Sequence[str]) -> list[_SortField]:
    names = list(order)
    if not names or names[-1].lstrip("-") not in {"id", "pk"}:
        descending = bool(names) and names[-1].startswith("-")
        names.append("-id" if descending else "id")
    fields = []
    for name in names:
        path = name.lstrip("-")
        path = "id" if path == "pk" else path
        annotation = queryset.query.annotations.get(path)
        field = annotation.output_field if annotation is not None else _model_field(queryset.model, path)
        fields.append(_SortField(path=path, descending=name.startswith("-"), field=field))
    return fields


def _encode(values: list[Any]) -> list[Any]:
    # Full precision (DjangoJSONEncoder would cut microseconds, and rows between the cut and the
    # true value would be skipped).
    encoded = []
    for value in values:
        if isinstance(value, datetime.datetime | datetime.date | datetime.time):
            encoded.append(value.isoformat())
        elif isinstance(value, decimal.Decimal | uuid.UUID):
            encoded.append(str(value))
        else:
            encoded.append(value)
    return encoded


def _decode(cursor: str, *, key: str, fields: list[_SortField]) -> list[Any]:
    try:
        values = signing.loads(cursor, salt=f"{CURSOR_SALT}:{key}")
    except signing.BadSignature:
        raise ValidationError({"cursor": BAD_CURSOR}) from None
    if not isinstance(values, list) or len(values) != len(fields):
        raise ValidationError({"cursor": BAD_CURSOR})
    decoded = []
    for sort_field, value in zip(fields, values, strict=True):
        if value is None:
            raise ValidationError({"cursor": BAD_CURSOR})
        target = sort_field.field.target_field if sort_field.field.is_relation else sort_field.field  # type: ignore[attr-defined]
        try:
            decoded.append(target.to_python(value))
        except ValidationError:
            raise ValidationError({"cursor": BAD_CURSOR}) from None
    return decoded


def _after(fields: list[_SortField], values: list[Any]) -> Q:
    """Rows strictly after ``values`` in the order: (a > x) or (a = x and b > y) or ..."""
    alternatives = []
    for index, sort_field in enumerate(fields):
        equal = {fields[before].path: values[before] for before in range(index)}
        lookup = f"{sort_field.path}__{'lt' if sort_field.descending else 'gt'}"
        alternatives.append(Q(**equal, **{lookup: values[index]}))
    return reduce(lambda left, right: left | right, alternatives)


def paginate(queryset: QuerySet[ModelT], *, order: Sequence[str], params: PageParams, key: str) -> Paged[ModelT]:
    """One page of ``queryset`` in ``order``, after ``params.cursor``; see the module docstring."""
    fields = _sort_fields(queryset, order)
    queryset = queryset.order_by(*[("-" if field.descending else "") + field.path for field in fields])
    if params.cursor:
        queryset = queryset.filter(_after(fields, _decode(params.cursor, key=key, fields=fields)))
    rows = list(queryset[: params.limit + 1])
    items = rows[: params.limit]
    next_cursor = None
    if len(rows) > params.limit:
        last = items[-1]
        next_cursor = signing.dumps(_encode([field.value_of(last) for field in fields]), salt=f"{CURSOR_SALT}:{key}", compress=True)
    return Paged(items=items, next=next_cursor)
