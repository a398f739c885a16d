from django.urls import path

from audit.api.views import AuditEventListView, AuditExportView, AuditVerifyView

urlpatterns = [
    path("events/", AuditEventListView.as_view(), name="audit-events"),
    path("verify/", AuditVerifyView.as_view(), name="audit-verify"),
    path("export/", AuditExportView.as_view(), name="audit-export"),
]
