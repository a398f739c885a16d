from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from audit.compliance.data_exports import export_files_sealed
        from encryption.reencryption import sealed_files_register

        sealed_files_register(export_files_sealed)
