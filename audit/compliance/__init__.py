"""Data-protection workflows: exports, erasure, retention (see each module)."""

from audit.compliance.data_exports import (
    ExportDownload,
    ExportUnavailable,
    compliance_export_download,
    compliance_export_request,
    compliance_export_run,
    compliance_export_visible,
    compliance_exports_expire,
)
from audit.compliance.erasure import (
    compliance_erasure_refusal,
    compliance_erasure_request,
    compliance_erasure_run,
)
from audit.compliance.requests import ComplianceRefused, compliance_officer_is, compliance_requests_sweep
from audit.compliance.retention import retention_conversations_purge, retention_usage_records_purge

__all__ = [
    "ComplianceRefused",
    "ExportDownload",
    "ExportUnavailable",
    "compliance_erasure_refusal",
    "compliance_erasure_request",
    "compliance_erasure_run",
    "compliance_export_download",
    "compliance_export_request",
    "compliance_export_run",
    "compliance_export_visible",
    "compliance_exports_expire",
    "compliance_officer_is",
    "compliance_requests_sweep",
    "retention_conversations_purge",
    "retention_usage_records_purge",
]
