"""URLs of the import upload API (included under /api/)."""

from django.urls import path

from backend.imaging.uploads import (
    ImportChunkApi,
    ImportCompleteApi,
    ImportCreateApi,
    ImportJobApi,
    ImportUploadStartApi,
)

urlpatterns = [
    path("imports/", ImportCreateApi.as_view(), name="import-create"),
    path("imports/uploads/", ImportUploadStartApi.as_view(), name="import-upload-start"),
    path("imports/<int:job_id>/", ImportJobApi.as_view(), name="import-job"),
    path("imports/<int:job_id>/files/<path:name>", ImportChunkApi.as_view(), name="import-chunk"),
    path("imports/<int:job_id>/complete/", ImportCompleteApi.as_view(), name="import-complete"),
]
