"""The web console is the Django admin, branded and reachable."""

from django.test import Client

from accounts.models import User
from audit.services import audit_event_record


def test_the_console_asks_anonymous_visitors_to_log_in(client: Client, db: None) -> None:
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_an_admin_sees_the_gatehouse_console_with_its_entities(client: Client, alice: User) -> None:
    client.force_login(alice)
    response = client.get("/admin/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Gatehouse console" in page
    for entity in ("Audit events", "Models", "Model versions", "Users"):
        assert entity in page


def test_audit_events_are_read_only_in_the_console(client: Client, alice: User) -> None:
    event = audit_event_record(action="test.event", actor=alice)
    client.force_login(alice)
    base = f"/admin/audit/auditevent/{event.pk}"
    assert client.get(f"{base}/change/").status_code == 200  # viewable
    assert client.get("/admin/audit/auditevent/add/").status_code == 403
    assert client.post(f"{base}/delete/", {"post": "yes"}).status_code == 403
    assert client.post(f"{base}/change/", {"action": "tampered"}).status_code == 403
    event.refresh_from_db()
    assert event.action == "test.event"


def test_a_member_is_not_let_into_the_console(client: Client, bob: User) -> None:
    client.force_login(bob)
    response = client.get("/admin/")
    assert response.status_code == 302
