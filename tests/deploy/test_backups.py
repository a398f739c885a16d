"""The backup jobs in deploy/ (the Kubernetes CronJob, compose's `backup` profile) take what
the restore drill (gatehouse.restore_drill) restores, in the order it relies on: the audit
checkpoints and the public key first, then a custom-format pg_dump as the tables' owner."""

from typing import Any

import pytest

from gatehouse import restore_drill
from tests.deploy.test_manifests import K8S, _compose, _config, _documents

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def manifests() -> list[Doc]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in _documents(path)
    ]


def _cronjob(manifests: list[Doc]) -> Doc:
    found = [doc for doc in manifests if doc["kind"] == "CronJob"]
    assert len(found) == 1, "one backup CronJob"
    return found[0]


def _script(container: Doc) -> str:
    return " ".join(container.get("command", []))


def _audit_first_then_dump(audit: str, dump: str, where: str) -> None:
    assert "audit-checkpoints" in audit, f"{where}: the checkpoints are not copied"
    assert "manage.py audit_public_key" in audit, f"{where}: the public key is not kept"
    assert "pg_dump --format=custom" in dump, f"{where}: not a dump pg_restore reads"
    assert f"/{restore_drill.DUMP}" in dump
    assert restore_drill.PUBLIC_KEY in audit
    assert restore_drill.CHECKPOINTS in audit


def test_the_cronjob_copies_the_audit_material_before_it_dumps(manifests: list[Doc]) -> None:
    job = _cronjob(manifests)
    assert job["spec"]["concurrencyPolicy"] == "Forbid", "two dumps at once"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    # Init containers finish before the containers start: that is the order.
    (audit,) = pod["initContainers"]
    (dump,) = pod["containers"]
    _audit_first_then_dump(_script(audit), _script(dump), "CronJob")
    sink = _config(manifests)["GATEHOUSE_AUDIT_CHECKPOINT_DIR"]
    mounts = {mount["mountPath"]: mount for mount in audit["volumeMounts"]}
    assert mounts[sink]["readOnly"] is True, "a backup must not be able to rewrite the sink"
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert (
        volumes[mounts[sink]["name"]]["persistentVolumeClaim"]["claimName"] == "gatehouse-audit-checkpoints"
    )
    owner = {item["name"]: item for item in dump["env"]}["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert owner["name"] == "gatehouse-migrate", "dump as the owner, who can read every table"
    assert "GATEHOUSE_AUDIT_SIGNING_KEY" not in str(pod), "the private key stays out of backups"
    for container in pod["initContainers"] + pod["containers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_compose_backup_profile_does_the_same() -> None:
    services = _compose()["services"]
    audit, dump = services["backup-audit"], services["backup"]
    assert audit["profiles"] == ["backup"]
    assert dump["profiles"] == ["backup"]
    assert dump["depends_on"]["backup-audit"]["condition"] == "service_completed_successfully"
    _audit_first_then_dump(_script(audit), _script(dump), "compose")
    assert "checkpoints:/var/lib/gatehouse/audit-checkpoints:ro" in audit["volumes"]
    assert dump["environment"]["PGUSER"] == services["db"]["environment"]["POSTGRES_USER"]
    assert dump["image"] == services["db"]["image"], "pg_dump must match the server's major version"
