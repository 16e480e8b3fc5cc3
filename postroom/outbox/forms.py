"""The composer's forms: explicit fields only; addresses parsed strictly when sending (R33).

``ComposeForm`` is what is sent, so its address fields must parse. ``DraftForm`` is what is
saved while the member types: the same fields as plain text, so a half-typed address is kept
as it is and nothing typed is lost.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from postroom.conversations.models import Conversation
from postroom.mailboxes.models import Mailbox
from postroom.mime.addresses import split_address_field
from postroom.orgs.models import Membership
from postroom.outbox import compose
from postroom.outbox.models import Draft, OutgoingKind

MAX_RECIPIENTS_PER_FIELD = 100
MAX_ADDRESS_TEXT = 10_000
MAX_SUBJECT = 998
MAX_TEXT = 1_000_000


class AddressListField(forms.CharField):
    """Comma-separated addresses (``Name <a@b>`` or ``a@b``) as (display name, address) pairs."""

    def to_python(self, value: Any) -> list[tuple[str, str]]:  # type: ignore[override]
        text = super().to_python(value)
        pairs = split_address_field(text) if text else []
        if pairs is None:
            raise forms.ValidationError("These addresses cannot be read unambiguously; separate them with commas.")
        if len(pairs) > MAX_RECIPIENTS_PER_FIELD:
            raise forms.ValidationError(f"At most {MAX_RECIPIENTS_PER_FIELD} addresses.")
        return pairs


class ComposeForm(forms.Form):
    mailbox = forms.ModelChoiceField(queryset=Mailbox.objects.none(), empty_label=None, label="From")
    to = AddressListField(required=False, max_length=MAX_ADDRESS_TEXT)
    cc = AddressListField(required=False, max_length=MAX_ADDRESS_TEXT, label="Cc")
    bcc = AddressListField(required=False, max_length=MAX_ADDRESS_TEXT, label="Bcc")
    subject = forms.CharField(required=False, max_length=MAX_SUBJECT, strip=False)
    text = forms.CharField(
        required=False, max_length=MAX_TEXT, strip=False, label="Message",
        widget=forms.Textarea(attrs={"rows": 12, "id": "composer-body"}),
    )  # fmt: skip
    draft = forms.UUIDField(required=False, widget=forms.HiddenInput(attrs={"id": "draft-id"}))

    def __init__(self, *args: Any, mailboxes: QuerySet[Mailbox], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["mailbox"].queryset = mailboxes  # type: ignore[attr-defined]


class DraftForm(forms.Form):
    mailbox = forms.ModelChoiceField(queryset=Mailbox.objects.none(), required=False)
    to = forms.CharField(required=False, max_length=MAX_ADDRESS_TEXT, strip=False)
    cc = forms.CharField(required=False, max_length=MAX_ADDRESS_TEXT, strip=False)
    bcc = forms.CharField(required=False, max_length=MAX_ADDRESS_TEXT, strip=False)
    subject = forms.CharField(required=False, max_length=MAX_SUBJECT, strip=False)
    text = forms.CharField(required=False, max_length=MAX_TEXT, strip=False)
    draft = forms.UUIDField(required=False)
    kind = forms.ChoiceField(choices=OutgoingKind.choices)
    conversation = forms.UUIDField(required=False)

    def __init__(self, *args: Any, mailboxes: QuerySet[Mailbox], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["mailbox"].queryset = mailboxes  # type: ignore[attr-defined]


def addresses_text(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(f'"{name}" <{address}>' if name else address for name, address in pairs)


def composer_initial(
    *, actor: Membership, mailboxes: QuerySet[Mailbox], kind: str, conversation: Conversation | None, draft: Draft | None
) -> dict[str, Any]:
    """What a composer starts with: the draft as it was saved, else recipients, subject and
    quote for a reply or forward, from the mailbox that received the conversation when the
    actor may send from it (their own, or their team's mailbox)."""
    if draft is not None:
        content = draft.content or {}
        return {
            "mailbox": (mailboxes.filter(pk=draft.mailbox_id).first() if draft.mailbox_id else None) or mailboxes.first(),
            "to": content.get("to", ""), "cc": content.get("cc", ""), "bcc": content.get("bcc", ""),
            "subject": content.get("subject", ""), "text": content.get("text", ""), "draft": draft.pk,
        }  # fmt: skip
    mailbox = mailboxes.first()
    if conversation is not None:
        received = mailboxes.filter(copies__message__conversation=conversation, copies__gone_at__isnull=True).first()
        mailbox = received or mailbox
    initial: dict[str, Any] = {"mailbox": mailbox}
    if conversation is not None and mailbox is not None:
        start = compose.draft_for(actor=actor, mailbox=mailbox, conversation=conversation, kind=kind)
        initial.update(to=addresses_text(start.to), cc=addresses_text(start.cc), subject=start.subject,
                       text=f"\n\n{start.quote}" if start.quote else "")  # fmt: skip
    return initial
