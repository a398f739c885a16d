"""The audit app's tables: the trail and its pseudonyms (`events`), the data-protection
requests handled against it (`compliance`), and the runs of its verification (`verification`)."""

from audit.models.compliance import ComplianceRequest, ErasureRequest, ExportRequest
from audit.models.events import AuditEvent, AuditSubject
from audit.models.verification import VerificationRun

__all__ = [
    "AuditEvent",
    "AuditSubject",
    "ComplianceRequest",
    "ErasureRequest",
    "ExportRequest",
    "VerificationRun",
]
