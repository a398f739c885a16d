from django.urls import path

from audit.api.compliance import (
    ErasureRequestDetailView,
    ErasureRequestListView,
    ExportDownloadView,
    ExportRequestDetailView,
    ExportRequestListView,
)

urlpatterns = [
    path("exports/", ExportRequestListView.as_view(), name="compliance-exports"),
    path("exports/<uuid:export_id>/", ExportRequestDetailView.as_view(), name="compliance-export"),
    path(
        "exports/<uuid:export_id>/download/", ExportDownloadView.as_view(), name="compliance-export-download"
    ),
    path("erasures/", ErasureRequestListView.as_view(), name="compliance-erasures"),
    path("erasures/<uuid:erasure_id>/", ErasureRequestDetailView.as_view(), name="compliance-erasure"),
]
