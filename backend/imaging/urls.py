from django.urls import path

import backend.core.ids  # noqa: F401  (registers the <id:...> converter)
from backend.imaging import apis

urlpatterns = [
    path("pools/", apis.PoolListApi.as_view(), name="pool-list"),
    path("pools/<id:pool_id>/", apis.PoolDetailApi.as_view(), name="pool-detail"),
    path("pools/<id:pool_id>/scans/", apis.PoolScanListApi.as_view(), name="pool-scans"),
    path("scans/<id:scan_id>/", apis.ScanDetailApi.as_view(), name="scan-detail"),
    path("scans/<id:scan_id>/slices/<int:z>.png", apis.ScanSlicePngApi.as_view(), name="scan-slice-png"),
    path("scans/<id:scan_id>/slices/<int:z>.raw", apis.ScanSliceRawApi.as_view(), name="scan-slice-raw"),
    path("scans/<id:scan_id>/labels/<int:z>.png", apis.ScanLabelPngApi.as_view(), name="scan-labels-png"),
    path("scans/<id:scan_id>/labels/<int:z>.raw", apis.ScanLabelRawApi.as_view(), name="scan-labels-raw"),
    path("scans/<id:scan_id>/uncertainty/<int:z>.png", apis.ScanUncertaintyPngApi.as_view(),
         name="scan-uncertainty-png"),
    path("scans/<id:scan_id>/uncertainty/<int:z>.raw", apis.ScanUncertaintyRawApi.as_view(),
         name="scan-uncertainty-raw"),
]
