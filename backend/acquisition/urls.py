"""Acquisition API, mounted under /api/ (docs/api-acquisition.md)."""

from django.urls import path

import backend.core.ids  # noqa: F401  (registers the <id:...> converter)
from backend.acquisition.annotation import apis as annotation_apis
from backend.acquisition.annotation import apis_labels as annotation_label_apis
from backend.acquisition.held_out import apis as held_out_apis
from backend.acquisition.outputs import apis as outputs_apis
from backend.acquisition.outputs import apis_biomech as biomech_apis
from backend.acquisition.outputs import apis_import as import_apis
from backend.acquisition.outputs import apis_pacs as pacs_apis
from backend.acquisition.steps import apis as steps_apis

P = "projects/<id:project_id>/"

urlpatterns = [
    path(P + "steps/", steps_apis.StepListApi.as_view(), name="acq-steps"),
    path(P + "steps/<id:step_id>/", steps_apis.StepDetailApi.as_view(), name="acq-step"),
    path(P + "steps/<id:step_id>/cancel/", steps_apis.StepCancelApi.as_view(), name="acq-step-cancel"),
    path(P + "steps/<id:step_id>/queries/", steps_apis.StepQueriesApi.as_view(), name="acq-step-queries"),
    path(P + "acquisition/settings/", steps_apis.SettingsApi.as_view(), name="acq-settings"),
    path(P + "acquisition/tau-preview/", steps_apis.TauPreviewApi.as_view(), name="acq-tau-preview"),
    path(P + "acquisition/mac/", steps_apis.MacApi.as_view(), name="acq-mac"),
    path(P + "acquisition/step-cost/", steps_apis.StepCostApi.as_view(), name="acq-step-cost"),
    path(P + "training-set/", steps_apis.TrainingSetApi.as_view(), name="acq-training-set"),
    path(P + "training-set/seed/", steps_apis.TrainingSetSeedApi.as_view(), name="acq-training-set-seed"),
    path(P + "held-out/", held_out_apis.HeldOutApi.as_view(), name="acq-held-out"),
    path(P + "training-set/export/", outputs_apis.TrainingSetExportApi.as_view(), name="acq-training-set-export"),
    path(P + "queries/next/", annotation_apis.QueryNextApi.as_view(), name="acq-query-next"),
    path(P + "queries/<id:query_id>/", annotation_apis.QueryDetailApi.as_view(), name="acq-query"),
    path(P + "queries/<id:query_id>/reformat/", annotation_apis.QueryReformatApi.as_view(),
         name="acq-query-reformat"),
    path(P + "queries/<id:query_id>/reformat/labels/", annotation_label_apis.QueryReformatLabelsApi.as_view(),
         name="acq-query-reformat-labels"),
    path(P + "queries/<id:query_id>/slice-labels/", annotation_label_apis.QuerySliceLabelsApi.as_view(),
         name="acq-query-slice-labels"),
    path(P + "queries/<id:query_id>/nearby/", annotation_apis.QueryNearbyApi.as_view(), name="acq-query-nearby"),
    path(P + "queries/<id:query_id>/claim/", annotation_apis.QueryClaimApi.as_view(), name="acq-query-claim"),
    path(P + "queries/<id:query_id>/release/", annotation_apis.QueryReleaseApi.as_view(), name="acq-query-release"),
    path(P + "queries/<id:query_id>/submit/", annotation_apis.QuerySubmitApi.as_view(), name="acq-query-submit"),
    path(P + "models/", outputs_apis.ModelListApi.as_view(), name="acq-models"),
    path(P + "models/import/", import_apis.ModelImportApi.as_view(), name="acq-model-import"),
    path(P + "models/<id:version_id>/", outputs_apis.ModelDetailApi.as_view(), name="acq-model"),
    path(P + "models/<id:version_id>/checkpoint/", outputs_apis.ModelCheckpointApi.as_view(),
         name="acq-model-checkpoint"),
    path(P + "segmentations/", outputs_apis.SegmentationListApi.as_view(), name="acq-segmentations"),
    path(P + "segmentations/<id:segmentation_id>/", outputs_apis.SegmentationDetailApi.as_view(),
         name="acq-segmentation"),
    path(P + "segmentations/<id:segmentation_id>/pacs/", pacs_apis.SegmentationSendApi.as_view(),
         name="acq-segmentation-pacs"),
    # Before the generic file route below, which would take these names as its kind.
    path(P + "segmentations/<id:segmentation_id>/meshes.zip", biomech_apis.SegmentationMeshesZipApi.as_view(),
         name="acq-segmentation-meshes-zip"),
    path(P + "segmentations/<id:segmentation_id>/meshes/", biomech_apis.SegmentationViewMeshesApi.as_view(),
         name="acq-segmentation-meshes"),
    path(P + "segmentations/<id:segmentation_id>/muscle-report.csv", biomech_apis.SegmentationMuscleReportApi.as_view(),
         name="acq-segmentation-muscle-report-csv"),
    path(P + "segmentations/<id:segmentation_id>/muscle-report.html",
         biomech_apis.SegmentationMuscleReportPageApi.as_view(), name="acq-segmentation-muscle-report-html"),
    path(P + "segmentations/<id:segmentation_id>/labels.seg.nrrd", biomech_apis.SegmentationSegNrrdApi.as_view(),
         name="acq-segmentation-seg-nrrd"),
    path(P + "references/seg-nrrd/", biomech_apis.ReferenceSegNrrdImportApi.as_view(), name="acq-reference-seg-nrrd"),
    path(P + "segmentations/<id:segmentation_id>/<str:kind>", outputs_apis.SegmentationFileApi.as_view(),
         name="acq-segmentation-file"),
]
