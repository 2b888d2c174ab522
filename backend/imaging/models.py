"""CT pools, scans with their stored volumes, reference label maps and import jobs.

Every scan is stored twice: its original files as uploaded, and its volume on the
working grid as int16 HU in a .npy file, which the slice endpoints and the worker read.
The working grid (``mltasks.grid``) is a subset of the CT's own voxels: its acquired
slices (thinned below about 1 mm) and the in-plane box of everything above -500 HU
plus 10 mm. Scans imported before it (``working_grid`` null) keep the grid they were
resampled onto then: 1 mm slices, 360 mm field of view, 512 x 512.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Pool(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Scan(models.Model):
    class Status(models.TextChoices):
        READY = "ready", "ready"
        FAILED = "failed", "failed"

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="scans")
    name = models.CharField(max_length=255)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.READY)
    # Geometry dicts as mltasks.geometry.Geometry.to_dict(): of the original and of the working grid.
    original_geometry = models.JSONField()
    geometry = models.JSONField()
    # mltasks.grid.WorkingGrid.to_dict(): which original voxels the working grid keeps, so that
    # arrays go back exactly (backend.imaging.grids). Null: an older import, resampled instead.
    working_grid = models.JSONField(null=True, blank=True)
    volume = models.FileField(upload_to="scans/%Y/%m/")  # .npy int16 HU (z, y, x) on the working grid
    # DICOM identifiers (empty for NIfTI/MHA/NRRD sources).
    patient_id = models.CharField(max_length=64, blank=True)
    study_uid = models.CharField(max_length=64, blank=True)
    series_uid = models.CharField(max_length=64, blank=True, db_index=True)
    modality = models.CharField(max_length=16, blank=True)
    manufacturer = models.CharField(max_length=128, blank=True)
    series_description = models.CharField(max_length=255, blank=True)
    source_format = models.CharField(max_length=16)  # dicom, nifti, mha, nrrd
    content_hash = models.CharField(max_length=64, db_index=True)  # sha256 of the original HU array
    # True for the later copies of a series or of pixel data imported twice before the database
    # enforced uniqueness (migration 0003): they stay, outside the constraints below.
    legacy_duplicate = models.BooleanField(default=False)
    import_log = models.TextField(blank=True)
    imported_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pool", "name"]
        # A series, and the same pixel data, are imported once in the whole installation
        # (services_scans.duplicate_of gives the message): checked by the importer, enforced here.
        # Procedural phantoms (demo, simulations) are generated, not imported: they may repeat.
        constraints = [
            models.UniqueConstraint(fields=["series_uid"], name="scan_series_uid_unique",
                                    condition=~models.Q(series_uid="") & models.Q(legacy_duplicate=False)),
            models.UniqueConstraint(fields=["content_hash"], name="scan_content_hash_unique",
                                    condition=~models.Q(source_format="phantom") & models.Q(legacy_duplicate=False)),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.geometry["shape"])


class ScanFile(models.Model):
    """One original file of a scan, kept as uploaded."""

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="files")
    # Stored under a name the server makes (scanners name files by 64-character UIDs);
    # the name it came with, of any length, is kept beside it.
    file = models.FileField(upload_to="originals/%Y/%m/")
    original_name = models.TextField()
    size = models.BigIntegerField()

    def __str__(self) -> str:
        return self.original_name


class ReferenceLabelMap(models.Model):
    """A fully or partly labelled reference for a scan, on the scan's working grid."""

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="reference_labels")
    label_set = models.ForeignKey("projects.LabelSet", on_delete=models.PROTECT, related_name="+")
    labels = models.FileField(upload_to="labels/%Y/%m/")  # .npy uint8 (z, y, x)
    labelled_slices = models.JSONField(default=list)  # z indices on the working grid; all slices when full
    source_name = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scan", "label_set"], name="one_reference_per_label_set")]

    def __str__(self) -> str:
        return f"reference labels of {self.scan}"


class ImportJob(models.Model):
    """An upload or command-line import running on the ``cpu`` queue."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    staging_dir = models.CharField(max_length=500)  # local folder holding the uploaded files until import ends
    label_set = models.ForeignKey("projects.LabelSet", null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    percent = models.FloatField(default=0.0)
    # Bytes the client announced for this upload: counted against the uploader's quota and
    # the free disk space while the job is pending or running (services_uploads).
    declared_bytes = models.BigIntegerField(default=0)
    # Failed before it ran because the task queue was down: its staged files wait for a retry.
    awaiting_retry = models.BooleanField(default=False)
    # One entry per input: {"name", "status": "imported"|"failed", "scan_id"?, "error"?}.
    results = models.JSONField(default=list)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"import {self.pk} into {self.pool}: {self.status}"


class DicomWebArchive(models.Model):
    """A PACS (or any DICOMweb archive) the site's administrators connected: searched with QIDO-RS,
    read with WADO-RS, written (DICOM-SEG) with STOW-RS (``backend.imaging.pacs``).

    The password is never stored in plain text: ``password_encrypted`` holds it encrypted
    with the site's PACS key (``backend.imaging.pacs.secrets``), and the API never returns it.
    """

    name = models.CharField(max_length=100, unique=True)
    # The DICOMweb root, e.g. https://pacs.example.org/dicom-web (QIDO, WADO and STOW below it).
    url = models.CharField(max_length=500)
    username = models.CharField(max_length=150, blank=True)
    password_encrypted = models.TextField(blank=True)  # Fernet token; empty: no password
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
