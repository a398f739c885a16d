"""Data keys: the keys that encrypt stored content, each kept wrapped under a master key."""

from django.db import models


class DataKey(models.Model):
    """One data key (AES-256), stored only wrapped (AES-GCM) under a master key.

    The newest key that is not retired and is wrapped under the primary master key encrypts
    everything written; older ones still decrypt what they wrote until the background
    re-encryption (`encryption.services.encryption_maintain`) has moved it to the current key,
    after which they are deleted. A database dump alone therefore decrypts nothing: the master
    keys live in the environment, never in the database.
    """

    # nonce (12 bytes) followed by the AES-GCM ciphertext of the 32-byte key and its tag.
    wrapped = models.BinaryField(editable=False)
    # Which master key (its id in GATEHOUSE_ENCRYPTION_KEYS) wrapped it.
    master_key_id = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when another key took over; the key then only decrypts, until nothing uses it.
    retired_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        state = "retired" if self.retired_at else "active"
        return f"data key {self.pk} ({state}, wrapped under {self.master_key_id})"
