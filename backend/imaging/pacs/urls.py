"""URLs of the PACS API (included under /api/)."""

from django.urls import path

import backend.core.ids  # noqa: F401  (registers the <id:...> converter)
from backend.imaging.pacs import apis

A = "pacs/archives/<id:archive_id>/"

urlpatterns = [
    path("pacs/archives/", apis.ArchiveListApi.as_view(), name="pacs-archives"),
    path(A, apis.ArchiveDetailApi.as_view(), name="pacs-archive"),
    path(A + "studies/", apis.StudySearchApi.as_view(), name="pacs-studies"),
    path(A + "series/", apis.SeriesSearchApi.as_view(), name="pacs-series"),
    path(A + "imports/", apis.PacsImportApi.as_view(), name="pacs-import"),
]
