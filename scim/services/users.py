"""Writes on SCIM's users: provisioned, updated, deactivated and deprovisioned through
`accounts.services` (so deactivation ends every session, API key and open websocket at once,
audited as anywhere else). Each function is one transaction: what it refuses (ScimError: 400,
404 or 409; ValidationError for a value Django refuses) leaves nothing written.

Personal values (names, addresses, userName, externalId) are never put in an audit record's
chained metadata, which erasure cannot blank: `user.updated` lists the attributes that
changed, and the record's target (the person, erasable) says whose.
"""

from django.db import transaction

from accounts.models import User
from accounts.roles import Role
from accounts.services import user_activate, user_create, user_deactivate
from audit.models import AuditEvent
from audit.services import audit_event_record
from scim.errors import uniqueness
from scim.models import ScimToken, ScimUser
from scim.patch import PatchOperation
from scim.payloads import UserAttributes
from scim.selectors import scim_user_get, scim_user_name_taken
from scim.user_patch import user_patch_apply


def _user_checked(*, attributes: UserAttributes, user: User | None) -> None:
    """Refuse before anything is written: a userName another account has (409), or values
    Django refuses (ValidationError naming the field)."""
    if scim_user_name_taken(user_name=attributes.user_name, except_user=user):
        raise uniqueness(f"userName {attributes.user_name!r} is taken by another Gatehouse account.")
    candidate = User(
        pk=user.pk if user else None,
        username=attributes.user_name,
        first_name=attributes.given_name,
        last_name=attributes.family_name,
        email=attributes.email,
    )
    candidate.full_clean(exclude=["password", "date_joined"], validate_unique=False)


@transaction.atomic
def scim_user_create(*, attributes: UserAttributes, token: ScimToken) -> ScimUser:
    """Provision a Gatehouse member from a SCIM User. They get an unusable password (they sign
    in with single sign-on) and no role but member. Raises ScimError (409) for a userName any
    account already has, in any letter case, SCIM's or not."""
    _user_checked(attributes=attributes, user=None)
    actor_name = token.audit_display
    user = user_create(
        username=attributes.user_name,
        password=None,
        email=attributes.email,
        roles=[Role.MEMBER],
        actor_name=actor_name,
    )
    if attributes.given_name or attributes.family_name:
        user.first_name, user.last_name = attributes.given_name, attributes.family_name
        user.save(update_fields=["first_name", "last_name"])  # part of the creation recorded above
    link = ScimUser.objects.create(user=user, external_id=attributes.external_id)
    if attributes.active is False:
        user_deactivate(user=user, actor=None, actor_name=actor_name)
    return link


def _user_attributes_apply(*, link: ScimUser, attributes: UserAttributes, token: ScimToken) -> ScimUser:
    """Make `link`'s user what `attributes` say: checked first (ScimError 409, ValidationError),
    then the changed fields saved and audited, then any change of `active` made by the
    accounts services."""
    user = link.user
    _user_checked(attributes=attributes, user=user)
    wanted = {
        "userName": ("username", attributes.user_name),
        "name.givenName": ("first_name", attributes.given_name),
        "name.familyName": ("last_name", attributes.family_name),
        "emails": ("email", attributes.email),
    }
    changed = sorted(scim for scim, (field, value) in wanted.items() if getattr(user, field) != value)
    if changed:
        for scim in changed:
            field, value = wanted[scim]
            setattr(user, field, value)
        user.save(update_fields=[wanted[scim][0] for scim in changed])
    if link.external_id != attributes.external_id:
        link.external_id = attributes.external_id
        changed.append("externalId")
    link.save()  # meta.lastModified
    if changed:
        audit_event_record(
            action="user.updated",
            target=user,
            metadata={"fields": sorted(changed)},
            actor_display=token.audit_display,
            actor_kind=AuditEvent.ActorKind.SYSTEM,
        )
    if attributes.active is not None and attributes.active != user.is_active:
        service = user_activate if attributes.active else user_deactivate
        link.user = service(user=user, actor=None, actor_name=token.audit_display)
    return link


@transaction.atomic
def scim_user_replace(*, scim_id: str, attributes: UserAttributes, token: ScimToken) -> ScimUser:
    """PUT: the user's kept attributes become `attributes`; those it omits are cleared, but
    an omitted `active` leaves the user as they are. active=false deactivates (every session,
    key and websocket ends), active=true reactivates. Raises ScimError (404, 409)."""
    link = scim_user_get(scim_id=scim_id, for_update=True)
    return _user_attributes_apply(link=link, attributes=attributes, token=token)


@transaction.atomic
def scim_user_patch(*, scim_id: str, operations: list[PatchOperation], token: ScimToken) -> ScimUser:
    """PATCH: `operations` applied to the user under a lock, all or nothing. Raises ScimError
    (400 for any bad operation, 404, 409)."""
    link = scim_user_get(scim_id=scim_id, for_update=True)
    user = link.user
    current = UserAttributes(
        user_name=user.username,
        given_name=user.first_name,
        family_name=user.last_name,
        email=user.email,
        external_id=link.external_id,
        active=user.is_active,
    )
    return _user_attributes_apply(link=link, attributes=user_patch_apply(current, operations), token=token)


@transaction.atomic
def scim_user_deprovision(*, scim_id: str, token: ScimToken) -> None:
    """DELETE: deactivate the user (every session, key and websocket ends) and end SCIM's link,
    so SCIM no longer finds them (404). The account row stays, deactivated, because the audit
    trail refers to it; erasure is a compliance request. Raises ScimError (404)."""
    link = scim_user_get(scim_id=scim_id, for_update=True)
    scim_id = str(link.id)
    user = user_deactivate(user=link.user, actor=None, actor_name=token.audit_display)
    link.delete()
    audit_event_record(
        action="scim.user.deprovisioned",
        target=user,
        metadata={"scim_id": scim_id},
        actor_display=token.audit_display,
        actor_kind=AuditEvent.ActorKind.SYSTEM,
    )
