"""A client's address is digested and checked in one spelling, so the personal digest that
covers it still matches whatever spelling the database gives the address back in.

Found by the appender's full-row test: a request through a dual-stack socket
(`::ffff:10.1.2.3`) was digested as Python spells it (`::ffff:a01:203`) and re-read as
PostgreSQL spells it (`::ffff:10.1.2.3`), so every such row failed verification. Such a client
is now recorded as the IPv4 address it is.
"""

import pytest
from django.db import connection

from accounts.models import User
from audit import chain
from audit.context import RequestContext, request_context_bound
from audit.models import AuditEvent
from audit.services import audit_event_record, ip_canonical
from audit.verification import audit_chain_verify
from tests.audit.sealed import sealed
from tests.audit.tampering import as_database_superuser, sql
from tests.profile import PRODUCTION

ADDRESSES = [
    "10.1.2.3",
    "::ffff:10.1.2.3",  # an IPv4 client through a dual-stack socket
    "::1.2.3.4",  # first 96 bits zero: PostgreSQL writes the tail dotted
    "::1:0",
    "::1",
    "::2",
    "2001:DB8:0:0:0:0:0:1",
    "fe80::abcd:ef01",
]


@pytest.mark.django_db
@pytest.mark.parametrize("address", ADDRESSES)
def test_a_row_verifies_whatever_the_address_spelling(alice: User, address: str) -> None:
    with request_context_bound(RequestContext(request_id="req-ip", client_ip=address, user_agent="ua")):
        (event,) = sealed(audit_event_record(action="test.address", actor=alice))

    report = audit_chain_verify(personal=True)

    assert report.ok, report
    stored = AuditEvent.objects.get(pk=event.pk).client_ip
    assert chain.address_canonical(stored) == ip_canonical(address)


def test_an_ipv4_client_seen_through_a_dual_stack_socket_is_recorded_as_ipv4() -> None:
    assert ip_canonical("::ffff:10.1.2.3") == "10.1.2.3"
    assert ip_canonical("2001:DB8:0:0:0:0:0:1") == "2001:db8::1"
    assert ip_canonical("") is None
    assert chain.address_canonical("not an address") == "not an address"


@pytest.mark.django_db
@pytest.mark.skipif(not PRODUCTION, reason="PostgreSQL's inet spelling")
@pytest.mark.parametrize("address", ADDRESSES)
def test_postgresqls_spelling_reads_back_as_the_one_digested(address: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT host(%s::inet)", [address])
        (spelled,) = cursor.fetchone()
    assert chain.address_canonical(spelled) == ip_canonical(address)


@pytest.mark.django_db
def test_an_address_altered_in_place_is_still_caught(alice: User) -> None:
    """Reading the address through its canonical spelling does not hide a changed one."""
    with request_context_bound(RequestContext(request_id="req-ip", client_ip="10.1.2.3", user_agent="ua")):
        (event,) = sealed(audit_event_record(action="test.address", actor=alice))
    with as_database_superuser():
        sql("UPDATE audit_auditevent SET client_ip = %s WHERE id = %s", ["10.1.2.4", event.pk])

    report = audit_chain_verify(personal=True)

    assert not report.ok
    assert report.personal_problem_count == 1
