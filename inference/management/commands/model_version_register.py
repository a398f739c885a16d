"""`manage.py model_version_register`: register a local Hugging Face directory as a new version."""

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from tqdm import tqdm

from inference.manifest import model_files
from inference.models import Model
from inference.services import model_register, model_source_relative, model_version_register


class Command(BaseCommand):
    help = (
        "Register a local Hugging Face model directory as a draft version of MODEL (created if new), "
        "recording the SHA-256 of every file. Stage and promote it in the console."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", help="model name users ask for, e.g. llama-3-8b")
        parser.add_argument(
            "directory", type=Path, help="the model directory (config.json, weights, tokenizer)"
        )
        parser.add_argument("--label", required=True, help="version label, e.g. v2")
        parser.add_argument("--context-length", type=int, default=4096)
        parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
        parser.add_argument(
            "--open-to-all", action="store_true", help="for a new model: usable by every member"
        )
        parser.add_argument(
            "--allow-pickle-weights", action="store_true", help="accept .bin/.pt weights (unsafe)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        directory: Path = options["directory"].resolve()
        if not (directory / "config.json").is_file():
            raise CommandError(f"{directory} is not a Hugging Face model directory (no config.json).")
        total = sum(path.stat().st_size for path in model_files(directory=directory))
        try:
            with (
                transaction.atomic(),
                tqdm(total=total, unit="B", unit_scale=True, desc="hashing", file=self.stderr) as bar,
            ):
                model = Model.objects.filter(name=options["model"]).first() or model_register(
                    name=options["model"], open_to_all=options["open_to_all"], actor=None
                )
                version = model_version_register(
                    model=model,
                    label=options["label"],
                    source=model_source_relative(directory=directory),
                    context_length=options["context_length"],
                    dtype=options["dtype"],
                    allow_pickle_weights=options["allow_pickle_weights"],
                    actor=None,
                    progress=bar.update,
                )
        except ValidationError as invalid:
            raise CommandError("; ".join(invalid.messages)) from None
        self.stdout.write(f"Registered {version} as a draft ({len(version.manifest)} files, {total} bytes).")
