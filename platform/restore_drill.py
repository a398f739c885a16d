"""The restore drill: back up a populated Gatehouse, restore it elsewhere, prove it works.

`make restore-drill` (or `python -m gatehouse.restore_drill`) runs, against scratch databases
on a PostgreSQL server where the given user may create databases:

1. populate a source: migrate, bootstrap, audited actions and a chat on the demo model
   (in-process executor), then seal a signed checkpoint of the trail;
2. back it up as the backup jobs in deploy/ do: the checkpoint sink and the signing key's
   public half first, then `pg_dump --format=custom` (a checkpoint taken after the dump could
   seal events the dump lacks);
3. restore the dump with `pg_restore` into a fresh database, with a *new* signing key and the
   backed-up public key as a retired one: the backup alone must be enough to verify it;
4. prove it: `migrate --check`, `audit_verify` over every link and the backed-up checkpoints,
   a conversation stored before the backup read back (decrypted with the master key, which is
   never in a backup: both sides get it from the environment, as from a secret store), a chat
   with the API key made before the backup, and a new checkpoint that extends the chain.

The scratch databases are dropped at the end unless --keep. Failure modes: any step's non-zero
exit stops the drill with that step's output (DrillFailed); pg_dump and pg_restore must be of
the server's major version or newer; the source and target databases are dropped first if
they exist, so never name a database you need.
"""

import argparse
import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DUMP = "gatehouse.dump"
CHECKPOINTS = "audit-checkpoints"
PUBLIC_KEY = "audit-public-key.txt"
# What a drill must not inherit from the shell that runs it: it brings its own of each.
_INHERITED_NOT = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "DEBUG")


class DrillFailed(Exception):
    """A step exited non-zero; the message holds its command and output."""


@dataclass
class Drill:
    server: str
    source: str
    target: str
    workdir: Path
    log: list[str] = field(default_factory=list)

    def url(self, database: str) -> str:
        return f"{self.server.rstrip('/')}/{database}"

    def run(self, command: list[str], *, env: dict[str, str] | None = None, step: str) -> str:
        result = subprocess.run(  # noqa: S603 - the drill's own fixed commands
            command, cwd=BASE_DIR, env=env, capture_output=True, text=True, check=False, timeout=900
        )
        output = result.stdout + result.stderr
        if result.returncode != 0:
            raise DrillFailed(f"{step}: `{' '.join(command)}` exited {result.returncode}\n{output[-4000:]}")
        self.log.append(f"ok: {step}")
        return result.stdout

    def manage(self, *arguments: str, env: dict[str, str], step: str) -> str:
        return self.run([sys.executable, "manage.py", *arguments], env=env, step=step)

    def psql(self, sql: str, *, step: str) -> None:
        self.run(
            ["psql", "--no-psqlrc", "--set=ON_ERROR_STOP=1", "--dbname", self.url("postgres"), "-c", sql],
            step=step,
        )


def _seed() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _environment(
    drill: Drill, *, database: str, signing_key: str, checkpoints: Path, extra: dict[str, str]
) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _INHERITED_NOT and not key.startswith("GATEHOUSE_")
    }
    env.update(
        {
            "DATABASE_URL": drill.url(database),
            "GATEHOUSE_INFERENCE_EXECUTOR": "inprocess",
            "GATEHOUSE_AUDIT_SIGNING_KEY": signing_key,
            "GATEHOUSE_AUDIT_CHECKPOINT_DIR": str(checkpoints),
            # Models live on their own volume, restored beside the database: both sides share one.
            "GATEHOUSE_MODEL_ROOT": str(drill.workdir / "models"),
            # Rows are sealed by the checkpoint and by audit_verify, in this process's own order.
            "GATEHOUSE_AUDIT_SEAL_INTERVAL": "0",
            "GATEHOUSE_AUDIT_DIRECT_APPENDS": "false",
            "GATEHOUSE_ADMIN_PASSWORD": secrets.token_urlsafe(24),
            **extra,
        }
    )
    return env


def backup(drill: Drill, *, env: dict[str, str], live_checkpoints: Path, into: Path) -> None:
    """What the CronJob and compose's `backup` service take, in their order."""
    into.mkdir(parents=True)
    shutil.copytree(live_checkpoints, into / CHECKPOINTS)
    (into / PUBLIC_KEY).write_text(drill.manage("audit_public_key", env=env, step="export the public key"))
    drill.run(
        ["pg_dump", "--format=custom", "--file", str(into / DUMP), "--dbname", drill.url(drill.source)],
        step="pg_dump the source",
    )


def _public_key_base64(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("base64:"):
            return line.split(":", 1)[1].strip()
    raise DrillFailed(f"no base64 public key in {PUBLIC_KEY}")


def verify(drill: Drill, *, env: dict[str, str], step: str) -> dict[str, object]:
    report = json.loads(drill.manage("audit_verify", "--json", env=env, step=step))
    if not report.get("ok") or not report.get("checkpoints_checked"):
        raise DrillFailed(f"{step}: {json.dumps(report)[:2000]}")
    return dict(report)


@dataclass(frozen=True)
class DrillResult:
    report: dict[str, object]  # what audit_verify reported on the restored database
    target_env: dict[str, str]  # how a process reaches the restored stack


def drill_run(drill: Drill) -> DrillResult:
    """Run every step; returns the restored stack's verification. Raises DrillFailed."""
    work = drill.workdir
    live, restored = work / "live-checkpoints", work / "restored-checkpoints"
    live.mkdir(parents=True, exist_ok=True)
    shared = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "JWT_SIGNING_KEY": secrets.token_urlsafe(50),
        "API_KEY_PEPPER": secrets.token_urlsafe(50),
        # Not in the backup: master keys come from the secret store, on both sides.
        "GATEHOUSE_ENCRYPTION_KEYS": f"drill:{_seed()}",
    }
    for database in (drill.source, drill.target):
        drill.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', step=f"drop {database}")
    drill.psql(f'CREATE DATABASE "{drill.source}"', step="create the source")
    source_env = _environment(
        drill, database=drill.source, signing_key=_seed(), checkpoints=live, extra=shared
    )
    drill.manage("migrate", "--noinput", env=source_env, step="migrate the source")
    drill.manage("bootstrap", env=source_env, step="bootstrap the source")
    state = work / "drill-state.json"
    stack = [sys.executable, "-m", "gatehouse.restore_drill_stack"]
    drill.run([*stack, "populate", "--state", str(state)], env=source_env, step="audited actions and a chat")
    drill.manage("audit_checkpoint", env=source_env, step="seal a checkpoint")
    verify(drill, env=source_env, step="verify the source")

    bundle = work / "backup"
    backup(drill, env=source_env, live_checkpoints=live, into=bundle)

    drill.psql(f'CREATE DATABASE "{drill.target}"', step="create the target")
    drill.run(
        ["pg_restore", "--exit-on-error", "--dbname", drill.url(drill.target), str(bundle / DUMP)],
        step="pg_restore into the target",
    )
    shutil.copytree(bundle / CHECKPOINTS, restored)
    retired = _public_key_base64((bundle / PUBLIC_KEY).read_text())
    target_env = _environment(
        drill,
        database=drill.target,
        signing_key=_seed(),
        checkpoints=restored,
        extra={**shared, "GATEHOUSE_AUDIT_RETIRED_PUBLIC_KEYS": retired},
    )
    drill.manage("migrate", "--check", env=target_env, step="the target's schema is complete")
    report = verify(drill, env=target_env, step="audit_verify on the restored database")
    drill.run([*stack, "chat", "--state", str(state)], env=target_env, step="a chat on the restored database")
    drill.manage("audit_checkpoint", env=target_env, step="seal with the new key")
    verify(drill, env=target_env, step="the chain extends past the restore")
    return DrillResult(report=report, target_env=target_env)


def drop(drill: Drill) -> None:
    for database in (drill.source, drill.target):
        drill.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', step=f"drop {database}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gatehouse.restore_drill", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--server", default="postgres://postgres@127.0.0.1:5432", help="a server URL, no database"
    )
    parser.add_argument("--source", default="gatehouse_drill_src")
    parser.add_argument("--target", default="gatehouse_drill_dst")
    parser.add_argument("--workdir", type=Path, default=None, help="kept; default: a temporary directory")
    parser.add_argument("--keep", action="store_true", help="leave the scratch databases for inspection")
    options = parser.parse_args(argv)
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="gatehouse-drill-"))
    drill = Drill(server=options.server, source=options.source, target=options.target, workdir=workdir)
    try:
        report = drill_run(drill).report
    except DrillFailed as failed:
        sys.stderr.write("\n".join(drill.log) + f"\nrestore drill FAILED at {failed}\n")
        return 1
    finally:
        if not options.keep:
            drop(drill)
        if options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.write(
        "\n".join(drill.log)
        + f"\nrestore drill passed: {report['events']} events and {report['checkpoints_checked']} "
        "checkpoints verify on the restored database, and it serves chats\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
