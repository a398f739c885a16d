"""The audit app's tables: the trail and its pseudonyms (`events`), and the data-protection
requests handled against it (`compliance`)."""

from audit.models.compliance import ComplianceRequest, ErasureRequest, ExportRequest
from audit.models.events import AuditEvent, AuditSubject

__all__ = ["AuditEvent", "AuditSubject", "ComplianceRequest", "ErasureRequest", "ExportRequest"]
