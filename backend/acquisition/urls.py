"""Acquisition API, mounted under /api/ (docs/api-acquisition.md)."""

from django.urls import path

import backend.core.ids  # noqa: F401  (registers the <id:...> converter)
from backend.acquisition import apis, apis_models, apis_queries

P = "projects/<id:project_id>/"

urlpatterns = [
    path(P + "steps/", apis.StepListApi.as_view(), name="acq-steps"),
    path(P + "steps/<id:step_id>/", apis.StepDetailApi.as_view(), name="acq-step"),
    path(P + "steps/<id:step_id>/cancel/", apis.StepCancelApi.as_view(), name="acq-step-cancel"),
    path(P + "steps/<id:step_id>/queries/", apis.StepQueriesApi.as_view(), name="acq-step-queries"),
    path(P + "acquisition/settings/", apis.SettingsApi.as_view(), name="acq-settings"),
    path(P + "acquisition/tau-preview/", apis.TauPreviewApi.as_view(), name="acq-tau-preview"),
    path(P + "acquisition/mac/", apis.MacApi.as_view(), name="acq-mac"),
    path(P + "training-set/", apis.TrainingSetApi.as_view(), name="acq-training-set"),
    path(P + "training-set/seed/", apis.TrainingSetSeedApi.as_view(), name="acq-training-set-seed"),
    path(P + "training-set/export/", apis.TrainingSetExportApi.as_view(), name="acq-training-set-export"),
    path(P + "queries/next/", apis_queries.QueryNextApi.as_view(), name="acq-query-next"),
    path(P + "queries/<id:query_id>/", apis_queries.QueryDetailApi.as_view(), name="acq-query"),
    path(P + "queries/<id:query_id>/claim/", apis_queries.QueryClaimApi.as_view(), name="acq-query-claim"),
    path(P + "queries/<id:query_id>/release/", apis_queries.QueryReleaseApi.as_view(), name="acq-query-release"),
    path(P + "queries/<id:query_id>/submit/", apis_queries.QuerySubmitApi.as_view(), name="acq-query-submit"),
    path(P + "models/", apis_models.ModelListApi.as_view(), name="acq-models"),
    path(P + "models/<id:version_id>/", apis_models.ModelDetailApi.as_view(), name="acq-model"),
    path(P + "models/<id:version_id>/checkpoint/", apis_models.ModelCheckpointApi.as_view(),
         name="acq-model-checkpoint"),
    path(P + "segmentations/", apis_models.SegmentationListApi.as_view(), name="acq-segmentations"),
    path(P + "segmentations/<id:segmentation_id>/", apis_models.SegmentationDetailApi.as_view(),
         name="acq-segmentation"),
    path(P + "segmentations/<id:segmentation_id>/<str:kind>", apis_models.SegmentationFileApi.as_view(),
         name="acq-segmentation-file"),
]
