"""Conversations are encrypted at rest: titles and messages become sealed text.

The columns become `EncryptedTextField`s, then every stored value is encrypted under the current
data key, in batches. Going back decrypts them again first, so that the older code reads plain
text; both directions need the master keys (GATEHOUSE_ENCRYPTION_KEYS, or the key file).
"""

from typing import Any

from django.db import migrations, models
from django.db.models.functions import Cast

import encryption.fields
from encryption.data_keys import data_key_current
from encryption.envelope import text_open, token_key_id
from encryption.reencryption import ReencryptionReport, column_reencrypt, column_stored_values

_COLUMNS = (("conversation", "title"), ("message", "content"))


def encrypt(apps: Any, schema_editor: Any) -> None:
    current = data_key_current()
    report = ReencryptionReport()
    for model_name, field_name in _COLUMNS:
        model = apps.get_model("inference", model_name)
        column_reencrypt(model=model, field_name=field_name, current_key_id=current.id, report=report)
    if report.unreadable:
        raise RuntimeError(f"{report.unreadable} stored values could not be read to encrypt them.")


def decrypt(apps: Any, schema_editor: Any) -> None:
    for model_name, field_name in _COLUMNS:
        model = apps.get_model("inference", model_name)
        purpose = model._meta.get_field(field_name).purpose
        stored_expression = Cast(field_name, output_field=models.TextField())
        for pk, stored in column_stored_values(model=model, field_name=field_name):
            if stored is None or token_key_id(stored) is None:
                continue
            plain = models.Value(text_open(token=stored, purpose=purpose), output_field=models.TextField())
            model.objects.filter(pk=pk).annotate(stored_value=stored_expression).filter(
                stored_value=stored
            ).update(**{field_name: plain})


class Migration(migrations.Migration):
    dependencies = [
        ("encryption", "0001_initial"),
        ("inference", "0013_version_prices"),
    ]

    operations = [
        migrations.AlterField(
            model_name="conversation",
            name="title",
            field=encryption.fields.EncryptedTextField(blank=True, purpose="inference.conversation.title"),
        ),
        migrations.AlterField(
            model_name="message",
            name="content",
            field=encryption.fields.EncryptedTextField(blank=True, purpose="inference.message.content"),
        ),
        migrations.RunPython(encrypt, decrypt),
    ]
