"""Remote versions: which credentials and addresses they may use, checked at registration and again
at every load and call, and what may change once a version exists."""

import socket
from io import StringIO
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from accounts.models import User
from audit.models import AuditEvent
from inference.engines.base import ChatMessage, GenerationParams
from inference.engines.circuit_breaker import CircuitBreaker
from inference.engines.loader import engines_clear
from inference.engines.remote import OpenAICompatibleEngine, RemoteUnavailable
from inference.models import Model, ModelVersion
from inference.services import (
    model_register,
    model_version_promote,
    model_version_register_remote,
    model_version_update,
)
from inference.upstream_credentials import upstream_credential_names, upstream_credential_read
from tests.fake_openai import FakeUpstream, fake_upstream
from tests.inference.websocket import access_token, chat_frame, communicator_for, frames_until_end


@pytest.fixture
def remote_model(alice: User) -> Model:
    return model_register(name="remote-model", open_to_all=True, actor=alice)


@pytest.mark.parametrize(
    "name", ["JWT_SIGNING_KEY", "SECRET_KEY", "DATABASE_URL", "GATEHOUSE_AUDIT_SIGNING_KEY"]
)
def test_registration_refuses_a_credential_outside_the_upstream_prefix(
    remote_model: Model, alice: User, upstream: FakeUpstream, name: str
) -> None:
    with pytest.raises(ValidationError, match="GATEHOUSE_UPSTREAM_") as refused:
        model_version_register_remote(
            model=remote_model,
            label="r1",
            base_url=upstream.base_url,
            remote_model="m",
            credential_ref=name,
            actor=alice,
        )
    assert "credential_ref" in refused.value.message_dict
    assert not ModelVersion.objects.exists()


def test_registration_takes_an_upstream_credential(
    remote_model: Model, alice: User, upstream: FakeUpstream
) -> None:
    version = model_version_register_remote(
        model=remote_model,
        label="r1",
        base_url=upstream.base_url,
        remote_model="m",
        credential_ref="GATEHOUSE_UPSTREAM_VLLM",
        actor=alice,
    )
    assert version.credential_ref == "GATEHOUSE_UPSTREAM_VLLM"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5:8000/v1",
        "http://[::ffff:169.254.169.254]/v1",
        "file:///etc/passwd",
        "http://user:pw@93.184.216.34/v1",
    ],
)
def test_registration_refuses_internal_and_odd_addresses(
    remote_model: Model, alice: User, settings: Any, url: str
) -> None:
    settings.DEBUG = False
    settings.GATEHOUSE_REMOTE_ALLOWED_HOSTS = []
    with pytest.raises(ValidationError) as refused:
        model_version_register_remote(
            model=remote_model, label="r1", base_url=url, remote_model="m", actor=alice
        )
    assert "remote_base_url" in refused.value.message_dict
    assert not ModelVersion.objects.exists()


def test_the_upstream_credential_module_lists_names_never_values(monkeypatch: Any) -> None:
    monkeypatch.setenv("GATEHOUSE_UPSTREAM_VLLM", "sk-vllm")
    monkeypatch.setenv("GATEHOUSE_UPSTREAM_EMPTY", "")
    monkeypatch.setenv("JWT_SIGNING_KEY", "signing-secret")
    assert "GATEHOUSE_UPSTREAM_VLLM" in upstream_credential_names()
    assert "GATEHOUSE_UPSTREAM_EMPTY" not in upstream_credential_names()
    assert "JWT_SIGNING_KEY" not in upstream_credential_names()
    assert upstream_credential_read(name="GATEHOUSE_UPSTREAM_VLLM") == "sk-vllm"
    with pytest.raises(ValueError, match="GATEHOUSE_UPSTREAM_"):
        upstream_credential_read(name="JWT_SIGNING_KEY")


def test_registration_fields_cannot_change_once_a_version_exists(
    remote_model: Model, alice: User, upstream: FakeUpstream
) -> None:
    version = model_version_register_remote(
        model=remote_model, label="r1", base_url=upstream.base_url, remote_model="m", actor=alice
    )
    for field, value in [
        ("remote_base_url", "https://elsewhere.example.com/v1"),
        ("credential_ref", "GATEHOUSE_UPSTREAM_OTHER"),
        ("backend", ModelVersion.Backend.TRANSFORMERS),
        ("source", "elsewhere/model"),
        ("remote_model", "other"),
        ("allow_pickle_weights", True),
        ("manifest", {"weights.bin": "0" * 64}),
    ]:
        with pytest.raises(ValidationError, match="register a new version"):
            model_version_update(version=version, changes={field: value}, actor=alice)
    version.refresh_from_db()
    assert version.remote_base_url == upstream.base_url
    assert version.credential_ref == ""
    changed = model_version_update(version=version, changes={"context_length": 4096}, actor=alice)
    assert changed.context_length == 4096
    assert AuditEvent.objects.filter(action="model.version.changed", target_id=str(version.pk)).exists()


def test_the_register_command_refuses_a_credential_outside_the_upstream_prefix(db: None) -> None:
    with pytest.raises(CommandError, match="GATEHOUSE_UPSTREAM_"):
        call_command(
            "model_version_register",
            "remote-model",
            "--label",
            "r1",
            "--remote-base-url",
            "https://93.184.216.34/v1",
            "--remote-model",
            "m",
            "--credential",
            "JWT_SIGNING_KEY",
            stdout=StringIO(),
            stderr=StringIO(),
        )
    assert not ModelVersion.objects.exists()


def _register_remote(upstream: FakeUpstream, *extra: str) -> StringIO:
    """`model_version_register remote-model --label r1` for `upstream` as `m`, and `extra`."""
    out = StringIO()
    call_command(
        "model_version_register",
        "remote-model",
        "--label",
        "r1",
        "--remote-base-url",
        upstream.base_url,
        "--remote-model",
        "m",
        *extra,
        stdout=out,
        stderr=StringIO(),
    )
    return out


def test_the_register_command_registers_a_remote_version(db: None, upstream: FakeUpstream) -> None:
    out = _register_remote(upstream, "--credential", "GATEHOUSE_UPSTREAM_VLLM")
    version = ModelVersion.objects.get(model__name="remote-model")
    assert version.backend == ModelVersion.Backend.OPENAI_COMPATIBLE
    assert version.credential_ref == "GATEHOUSE_UPSTREAM_VLLM"
    assert "Registered remote-model@r1" in out.getvalue()


def test_the_register_command_registers_a_remote_version_with_two_deployments(
    db: None, upstream: FakeUpstream
) -> None:
    out = _register_remote(
        upstream,
        "--deployment",
        f"{upstream.base_url.replace('127.0.0.1', 'localhost')},m-replica,GATEHOUSE_UPSTREAM_VLLM,3",
        "--deployment",
        f"{upstream.base_url},m-small,max_concurrency=2,tokens_per_minute=9000",
    )
    version = ModelVersion.objects.get(model__name="remote-model")
    assert list(
        version.deployments.values_list(
            "remote_model", "credential_ref", "weight", "max_concurrency", "tokens_per_minute"
        )
    ) == [
        ("m", "", 1, None, None),
        ("m-replica", "GATEHOUSE_UPSTREAM_VLLM", 3, None, None),
        ("m-small", "", 1, 2, 9000),
    ]
    assert "(remote: 3 deployment(s))" in out.getvalue()


@pytest.mark.parametrize(
    ("deployment", "fragment"),
    [
        ("just-a-url", "URL,MODEL"),
        ("http://127.0.0.1:9/v1,m,,0", "at least 1"),
        ("http://127.0.0.1:9/v1,m,max_concurrency=0", "at least 1"),
        ("http://127.0.0.1:9/v1,m,burst=4", "no setting named burst"),
        ("http://169.254.169.254/v1,m", "metadata"),
    ],
)
def test_a_bad_deployment_registers_nothing(
    db: None, upstream: FakeUpstream, deployment: str, fragment: str
) -> None:
    with pytest.raises(CommandError, match=fragment):
        _register_remote(upstream, "--deployment", deployment)
    assert not ModelVersion.objects.exists()


def _stored_behind_the_services(upstream: FakeUpstream, alice: User, credential_ref: str) -> None:
    # A row written before the rules existed (or by hand): never trusted at load time.
    model = model_register(name="remote-model", open_to_all=True, actor=alice)
    version = ModelVersion.objects.create(
        model=model,
        label="r1",
        backend=ModelVersion.Backend.OPENAI_COMPATIBLE,
        remote_base_url=upstream.base_url,
        remote_model="m",
        credential_ref=credential_ref,
    )
    model_version_promote(version=version, actor=alice)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inference_backend")
async def test_a_stored_credential_outside_the_prefix_is_never_read_nor_sent(
    alice: User, bob: User, upstream: FakeUpstream, settings: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("JWT_SIGNING_KEY", "the-signing-key")
    await database_sync_to_async(engines_clear)()
    await database_sync_to_async(_stored_behind_the_services)(upstream, alice, "JWT_SIGNING_KEY")
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("r", model="remote-model"))
    frames = await frames_until_end(communicator, "r")
    await communicator.disconnect()
    assert upstream.requests == []
    assert frames[-1]["type"] == "error"
    assert frames[-1]["code"] == "unavailable"
    event = await database_sync_to_async(AuditEvent.objects.get)(action="model.version.load_refused")
    assert "GATEHOUSE_UPSTREAM_" in event.metadata["reason"]
    assert "the-signing-key" not in str(event.metadata)


def _engine(base_url: str) -> OpenAICompatibleEngine:
    return OpenAICompatibleEngine(
        base_url=base_url, model="m", max_retries=0, retry_backoff=0.0, breaker=CircuitBreaker()
    )


def _generate(engine: OpenAICompatibleEngine) -> None:
    engine.generate_stream(
        messages=[ChatMessage(role="user", content="hello")],
        params=GenerationParams(max_tokens=16),
        on_token=lambda texts: None,
        should_stop=lambda: False,
    )


def test_the_address_is_checked_again_at_every_call(
    upstream: FakeUpstream, settings: Any, monkeypatch: Any
) -> None:
    """A name that resolved to a public address at registration may point inward later."""
    settings.DEBUG = False
    settings.GATEHOUSE_REMOTE_ALLOWED_HOSTS = ["127.0.0.1"]
    port = upstream.base_url.split(":")[2].split("/")[0]
    engine = _engine(f"http://upstream.example.com:{port}/v1")
    resolved = {"address": "127.0.0.1"}
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "upstream.example.com":
            return real_getaddrinfo(resolved["address"], *args, **kwargs)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    settings.GATEHOUSE_REMOTE_ALLOWED_HOSTS = ["upstream.example.com"]
    _generate(engine)
    assert len(upstream.requests) == 1
    resolved["address"] = "169.254.169.254"
    with pytest.raises(RemoteUnavailable, match="link-local or cloud metadata"):
        _generate(engine)
    assert len(upstream.requests) == 1


def test_a_redirect_from_the_upstream_is_an_error_not_followed(upstream: FakeUpstream) -> None:
    with fake_upstream() as elsewhere:
        upstream.mode = f"redirect:{elsewhere.base_url}/chat/completions"
        with pytest.raises(RemoteUnavailable, match="redirect"):
            _generate(_engine(upstream.base_url))
        assert elsewhere.requests == []
    assert len(upstream.requests) == 1
