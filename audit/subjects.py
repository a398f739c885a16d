"""Pseudonyms for people in the trail, and erasing the link back to them."""

import secrets
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditEvent, AuditSubject


@dataclass(frozen=True)
class Subject:
    pseudonym: str
    key: bytes


# user id -> subject, filled once the transaction that read it commits (a rolled-back one may
# have made it). A subject's pseudonym and key never change while its user exists.
_known: dict[int, Subject] = {}


def audit_subject_cache_clear() -> None:
    _known.clear()


def _remember(user_id: int, subject: Subject) -> Subject:
    transaction.on_commit(lambda: _known.__setitem__(user_id, subject))
    return subject


def _as_subject(row: AuditSubject) -> Subject:
    return Subject(pseudonym=str(row.pseudonym), key=bytes.fromhex(row.key))


def audit_subject_for(*, user: AbstractBaseUser) -> Subject:
    """The pseudonym and key under which `user` appears in the trail; made on first use."""
    user_id = int(user.pk)
    if user_id in _known:
        return _known[user_id]
    row = AuditSubject.objects.filter(user_id=user_id).first()
    if row is not None and row.key:
        return _remember(user_id, _as_subject(row))
    try:
        # A savepoint: a concurrent first event for the same user may win the insert.
        with transaction.atomic():
            row = AuditSubject.objects.create(
                user_id=user_id, display=user.get_username(), key=secrets.token_hex(32)
            )
    except IntegrityError:
        row = AuditSubject.objects.get(user_id=user_id)
    return _remember(user_id, _as_subject(row))


def audit_pseudonym(*, user: AbstractBaseUser) -> str:
    """How the trail names `user` in metadata: never by username, which erasure could not reach."""
    return audit_subject_for(user=user).pseudonym


def audit_subject_keys() -> dict[str, bytes | None]:
    """Every pseudonym's key (None once erased), for checking personal details."""
    return {
        str(pseudonym): bytes.fromhex(key) if key else None
        for pseudonym, key in AuditSubject.objects.values_list("pseudonym", "key")
    }


@transaction.atomic
def audit_subject_erase(*, user: AbstractBaseUser) -> int:
    """Cut the link between `user` and the trail; returns how many rows were blanked.

    The key and name go from the mapping, and the rows' personal details (name, address,
    user agent) are blanked in place, which the append-only trigger allows and nothing else.
    The rows' pseudonyms, actions and digests stay, so the chain verifies as before.
    """
    subject = AuditSubject.objects.select_for_update().filter(user_id=user.pk).first()
    _known.pop(int(user.pk), None)
    if subject is None:
        return 0
    pseudonym = subject.pseudonym
    as_actor = AuditEvent.objects.filter(actor_pseudonym=pseudonym).update(
        actor=None, actor_display="", client_ip=None, user_agent=""
    )
    as_target = AuditEvent.objects.filter(target_pseudonym=pseudonym).update(target_display="")
    subject.key = ""
    subject.display = ""
    subject.user = None
    subject.erased_at = timezone.now()
    subject.save(update_fields=["key", "display", "user", "erased_at"])
    return as_actor + as_target
