"""URLs of the import upload API (included under /api/)."""

from django.urls import path

import backend.core.ids  # noqa: F401  (registers the <id:...> converter)
from backend.imaging.apis_imports import (
    ImportChunkApi,
    ImportCompleteApi,
    ImportCreateApi,
    ImportJobApi,
    ImportRetryApi,
    ImportUploadStartApi,
)

urlpatterns = [
    path("imports/", ImportCreateApi.as_view(), name="import-create"),
    path("imports/uploads/", ImportUploadStartApi.as_view(), name="import-upload-start"),
    path("imports/<id:job_id>/", ImportJobApi.as_view(), name="import-job"),
    path("imports/<id:job_id>/files/<path:name>", ImportChunkApi.as_view(), name="import-chunk"),
    path("imports/<id:job_id>/complete/", ImportCompleteApi.as_view(), name="import-complete"),
    path("imports/<id:job_id>/retry/", ImportRetryApi.as_view(), name="import-retry"),
]
