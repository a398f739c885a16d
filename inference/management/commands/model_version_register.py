"""`manage.py model_version_register`: register a local directory, a hub repository, or a remote
OpenAI-compatible upstream, as a new version."""

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from tqdm import tqdm

from inference.manifest import Progress, model_files
from inference.models import Model, ModelVersion
from inference.services import (
    model_deployment_add,
    model_register,
    model_source_relative,
    model_version_register,
    model_version_register_from_hub,
    model_version_register_remote,
)

DEPLOYMENT_FORMAT = "URL,MODEL[,CREDENTIAL[,WEIGHT]][,max_concurrency=N][,tokens_per_minute=N]"


class Command(BaseCommand):
    help = (
        "Register a local Hugging Face model directory (or, where a hub is reachable, a hub "
        "repository, fetched once into the model root) as a draft version of MODEL (created if "
        "new), recording the SHA-256 of every file; or, with --remote-base-url, a model served by "
        "an OpenAI-compatible upstream. Stage and promote it in the console."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", help="model name users ask for, e.g. llama-3-8b")
        parser.add_argument(
            "directory", type=Path, nargs="?", help="the model directory (config.json, weights, tokenizer)"
        )
        parser.add_argument("--hub-id", help="instead of a directory: a hub repository, e.g. org/model")
        parser.add_argument("--revision", default="main", help="with --hub-id: branch, tag or commit")
        parser.add_argument("--label", required=True, help="version label, e.g. v2")
        parser.add_argument("--context-length", type=int, default=4096)
        parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
        parser.add_argument(
            "--open-to-all", action="store_true", help="for a new model: usable by every member"
        )
        parser.add_argument(
            "--kind",
            choices=list(Model.Kind.values),
            default=Model.Kind.CHAT,
            help="for a new model: chat (the default) or embedding",
        )
        parser.add_argument(
            "--tool-call-format",
            choices=[value for value in ModelVersion.ToolCallFormat.values if value],
            default=ModelVersion.ToolCallFormat.NONE,
            help="local versions whose chat template offers tools: how their output calls them",
        )
        parser.add_argument(
            "--allow-pickle-weights", action="store_true", help="accept .bin/.pt weights (unsafe)"
        )
        parser.add_argument(
            "--remote-base-url",
            help="instead of files: an OpenAI-compatible upstream, e.g. https://vllm:8000/v1",
        )
        parser.add_argument(
            "--remote-model", help="with --remote-base-url: the model name the upstream knows"
        )
        parser.add_argument(
            "--credential",
            default="",
            help="with --remote-base-url: the NAME of the GATEHOUSE_UPSTREAM_* environment variable "
            "holding the upstream's API key (never the key)",
        )
        parser.add_argument(
            "--deployment",
            action="append",
            default=[],
            metavar=DEPLOYMENT_FORMAT,
            help="with --remote-base-url: another upstream serving the version (repeatable); calls "
            "are shared by weight (1 unless said; the --remote-base-url one weighs 1), each "
            "deployment taking at most max_concurrency calls at once and tokens_per_minute where "
            "set, and move on to the next when one fails before answering",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        sources = [options["directory"], options["hub_id"], options["remote_base_url"]]
        if sum(source is not None for source in sources) != 1:
            raise CommandError(
                "Give either a model directory or --hub-id (or --remote-base-url for a remote model): "
                "one of them, not several and not none."
            )
        try:
            if options["remote_base_url"]:
                version = self._remote(options)
                count = version.deployments.count()
                self.stdout.write(f"Registered {version} as a draft (remote: {count} deployment(s)).")
                return
            version = self._from_hub(options) if options["hub_id"] else self._from_directory(options)
        except ValidationError as invalid:
            raise CommandError("; ".join(invalid.messages)) from None
        self.stdout.write(f"Registered {version} as a draft ({len(version.manifest)} files).")

    def _remote(self, options: dict[str, Any]) -> ModelVersion:
        if not options["remote_model"]:
            raise CommandError("--remote-base-url needs --remote-model, the model name the upstream knows.")
        deployments = [_deployment_parse(text) for text in options["deployment"]]
        with transaction.atomic():
            model = Model.objects.filter(name=options["model"]).first() or model_register(
                name=options["model"], open_to_all=options["open_to_all"], kind=options["kind"], actor=None
            )
            version = model_version_register_remote(
                model=model,
                label=options["label"],
                base_url=options["remote_base_url"],
                remote_model=options["remote_model"],
                credential_ref=options["credential"],
                context_length=options["context_length"],
                actor=None,
            )
            for deployment in deployments:
                model_deployment_add(version=version, **deployment, actor=None)
            return version

    def _common(self, options: dict[str, Any], progress: Progress) -> dict[str, Any]:
        return {
            "label": options["label"],
            "context_length": options["context_length"],
            "dtype": options["dtype"],
            "allow_pickle_weights": options["allow_pickle_weights"],
            "tool_call_format": options["tool_call_format"],
            "actor": None,
            "progress": progress,
        }

    def _from_directory(self, options: dict[str, Any]) -> ModelVersion:
        directory: Path = options["directory"].resolve()
        if not (directory / "config.json").is_file():
            raise CommandError(f"{directory} is not a Hugging Face model directory (no config.json).")
        total = sum(path.stat().st_size for path in model_files(directory=directory))
        with (
            transaction.atomic(),
            tqdm(total=total, unit="B", unit_scale=True, desc="hashing", file=self.stderr) as bar,
        ):
            model = Model.objects.filter(name=options["model"]).first() or model_register(
                name=options["model"], open_to_all=options["open_to_all"], kind=options["kind"], actor=None
            )
            return model_version_register(
                model=model,
                source=model_source_relative(directory=directory),
                **self._common(options, bar.update),
            )

    def _from_hub(self, options: dict[str, Any]) -> ModelVersion:
        self.stderr.write(f"fetching {options['hub_id']}@{options['revision']} from the hub...")
        with tqdm(unit="B", unit_scale=True, desc="hashing", file=self.stderr) as bar:
            return model_version_register_from_hub(
                model_name=options["model"],
                repo_id=options["hub_id"],
                revision=options["revision"],
                open_to_all=options["open_to_all"],
                kind=options["kind"],
                **self._common(options, bar.update),
            )


def _deployment_parse(text: str) -> dict[str, Any]:
    """`URL,MODEL[,CREDENTIAL[,WEIGHT]][,max_concurrency=N][,tokens_per_minute=N]` as
    `model_deployment_add`'s arguments."""
    parts = [part.strip() for part in text.split(",")]
    limits = {name: value for name, _, value in (part.partition("=") for part in parts if "=" in part)}
    parts = [part for part in parts if "=" not in part]
    if not 2 <= len(parts) <= 4 or not all(parts[:2]):  # noqa: PLR2004 - URL and model at least
        raise CommandError(f"--deployment {text!r}: give {DEPLOYMENT_FORMAT}.")
    weight = parts[3] if len(parts) == 4 else "1"  # noqa: PLR2004 - the weight is the fourth
    if unknown := sorted(set(limits) - {"max_concurrency", "tokens_per_minute"}):
        raise CommandError(f"--deployment {text!r}: no setting named {', '.join(unknown)}.")
    for value in (weight, *limits.values()):
        if not value.isdigit() or int(value) < 1:
            raise CommandError(f"--deployment {text!r}: {value!r} is not a whole number of at least 1.")
    return {
        "base_url": parts[0],
        "remote_model": parts[1],
        "credential_ref": parts[2] if len(parts) > 2 else "",  # noqa: PLR2004 - the third part
        "weight": int(weight),
        **{name: int(value) for name, value in limits.items()},
    }
