"""Session keys and the ending of sessions (SECURITY.md R16, R18).

The attackers: one who plants a session id in a victim's browser before the victim signs in
(session fixation), and one who already holds a session — a stolen cookie, a device left signed
in — and wants to keep it after the owner notices and changes their password or second factor.

The defences:

- A new session key after every authentication step: the password step (also when a second
  factor is still to come), the second factor, a reauthentication, an OpenID Connect callback.
  allauth reports each step through ``authentication_step_completed``; Django's ``login()``
  rotates the key once more when the member is finally signed in. An old key then names no row.
- A password change, a second-factor change (TOTP on/off, passkey added/removed, recovery codes
  renewed), a password reset and an email change rotate ``User.security_stamp``. The stamp is
  part of the session auth hash, so every other session of the member stops authenticating on
  its next request, whether or not allauth.usersessions tracked it; the tracked ones are also
  deleted from the session store at once. The session that made the change is kept (its hash is
  renewed); an email change confirmed from a signed-out browser keeps none.
- Deactivating a member (``is_active=False``) deletes their sessions at once; until then Django
  already refuses an inactive user on every request.
- A member can end any one of their sessions from the session list (after confirming their
  password, see ``reauth``); allauth's page ends all the others at once.

Not done: rotating keys when an organization role changes. Roles are read from the database on
every request (``orgs.policy``), never cached in the session, so a new key would protect nothing.

The session actions live here with the rules they enforce rather than in ``actions.py``.
"""

from __future__ import annotations

from typing import Any

from allauth.account.signals import authentication_step_completed, email_changed, password_changed, password_reset, password_set
from allauth.mfa.signals import authenticator_added, authenticator_removed, authenticator_reset
from allauth.usersessions.adapter import get_adapter as get_usersessions_adapter
from allauth.usersessions.models import UserSession
from django.contrib.auth import HASH_SESSION_KEY, logout
from django.db import transaction
from django.db.models.signals import post_save
from django.http import Http404, HttpRequest

from postroom.accounts.models import User, new_security_stamp
from postroom.audit.actions import audit_record

# Marks a request whose credential change already ended the other sessions, so that one form
# that fires several signals (TOTP on plus its first recovery codes) ends them once.
_ENDED_MARK = "_postroom_other_sessions_ended"


def _follow_key_change(request: HttpRequest, old_key: str | None) -> None:
    """Keep the member's session list pointing at the current session after a key rotation."""
    new_key = request.session.session_key
    if not request.user.is_authenticated or not new_key or old_key == new_key:
        return
    updated = UserSession.objects.filter(session_key=old_key, user_id=request.user.pk).update(session_key=new_key) if old_key else 0
    if not updated:
        UserSession.objects.create_from_request(request)


def session_key_rotate(*, request: HttpRequest) -> None:
    old_key = request.session.session_key
    request.session.cycle_key()
    _follow_key_change(request, old_key)


@transaction.atomic
def other_sessions_end(*, user: User, request: HttpRequest | None) -> int:
    """Rotate the security stamp so that only ``request``'s session (if it is the user's) stays.

    Not audited here: it follows a credential change, which is audited as such (``signals``).
    """
    if request is not None and getattr(request, _ENDED_MARK, False):
        return 0
    user.security_stamp = new_security_stamp()
    user.save(update_fields=["security_stamp"])
    keep_key = None
    if request is not None and request.user.is_authenticated and request.user.pk == user.pk:
        if request.user is not user:
            request.user.security_stamp = user.security_stamp
        # Saved now, and without a new key: allauth announces second-factor changes from
        # transaction.on_commit, which may run after the response has already stored the
        # session and set its cookie; a key changed then would never reach the browser.
        request.session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        request.session.save()
        keep_key = request.session.session_key
        setattr(request, _ENDED_MARK, True)
    others = list(UserSession.objects.filter(user_id=user.pk).exclude(session_key=keep_key or ""))
    get_usersessions_adapter().end_sessions(others)
    return len(others)


@transaction.atomic
def user_session_end(*, actor: User, session_id: int, request: HttpRequest) -> None:
    """End one of the actor's own sessions; anyone else's is 'not found'."""
    session = UserSession.objects.filter(user_id=actor.pk, pk=session_id).first()
    if session is None:
        raise Http404
    is_current = session.session_key == request.session.session_key
    audit_record(action="auth.session_ended", actor=actor, request=request, target=actor, target_label=actor.email, details={"current": is_current})
    if is_current:
        session.delete()
        logout(request)
    else:
        get_usersessions_adapter().end_sessions([session])


def sessions_end_all(*, user: User) -> int:
    sessions = list(UserSession.objects.filter(user_id=user.pk))
    get_usersessions_adapter().end_sessions(sessions)
    return len(sessions)


# --- Receivers (connected in AccountsConfig.ready) ---------------------------------------------


def on_authentication_step(sender: Any, request: HttpRequest, **kwargs: Any) -> None:
    session_key_rotate(request=request)


def on_credential_change(sender: Any, request: HttpRequest | None = None, user: User | None = None, **kwargs: Any) -> None:
    if user is not None:
        other_sessions_end(user=user, request=request)


def on_email_changed(sender: Any, request: HttpRequest | None = None, user: User | None = None, **kwargs: Any) -> None:
    # allauth also reports confirming the very first address (at sign-up) as a change "from
    # None"; nothing changed hands then.
    if kwargs.get("from_email_address") is not None:
        on_credential_change(sender, request=request, user=user)


def on_user_saved(sender: Any, instance: User, created: bool, **kwargs: Any) -> None:
    if not created and not instance.is_active:
        sessions_end_all(user=instance)


CREDENTIAL_SIGNALS = (password_changed, password_set, password_reset, authenticator_added, authenticator_removed, authenticator_reset)


def connect_receivers() -> None:
    authentication_step_completed.connect(on_authentication_step, dispatch_uid="postroom.sessions.step")
    for signal in CREDENTIAL_SIGNALS:
        signal.connect(on_credential_change, dispatch_uid="postroom.sessions.credential_change")
    email_changed.connect(on_email_changed, dispatch_uid="postroom.sessions.email_changed")
    post_save.connect(on_user_saved, sender=User, dispatch_uid="postroom.sessions.user_saved")
