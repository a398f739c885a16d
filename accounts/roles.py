"""The five platform roles of SPEC §4, stored as Django groups."""

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    MODEL_MANAGER = "model_manager"
    MEMBER = "member"
    AUDITOR = "auditor"
    COMPLIANCE_OFFICER = "compliance_officer"
