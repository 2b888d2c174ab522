"""Acquisition steps, pixel queries, the growing training set, and model versions.

Rasters are one working-grid slice (H, W) stored compactly (``backend.acquisition.codec``):
masks as ``np.packbits``, labels as zlib uint8, uncertainty as zlib float16.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from backend.acquisition.states import State


class AcquisitionStep(models.Model):
    """One active-learning step of a project; ``state`` is the phase pending or running."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="acquisition_steps")
    number = models.PositiveIntegerField()
    state = models.CharField(max_length=12, choices=State.choices, default=State.CREATED)
    reason = models.TextField(blank=True)  # why it failed or was cancelled
    # The project's configuration when the step started (the project may change later).
    strategy = models.CharField(max_length=20)
    tau = models.FloatField()
    slices_per_step = models.PositiveIntegerField()
    k_uncertain = models.PositiveIntegerField()
    mc_samples = models.PositiveIntegerField()
    # Phase bookkeeping: who runs it, when it last reported, how far it is.
    runner = models.CharField(max_length=200, blank=True)  # "worker hostname|pid" while a task holds the phase
    heartbeat = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    percent = models.FloatField(default=0.0)
    eta_seconds = models.FloatField(null=True, blank=True)
    # The named part of the phase running now (steps.progress.SUBPHASES: "first_model" inside
    # inferring, then "ranking"...), with its own percent and ETA: training model 0 and ranking
    # the pool share the inferring state but take very different times.
    subphase = models.CharField(max_length=20, blank=True)
    subphase_percent = models.FloatField(default=0.0)
    subphase_eta_seconds = models.FloatField(null=True, blank=True)
    # Phase results.
    inference_file = models.FileField(upload_to="acquisition/inference/", blank=True)  # npz of D_c maps
    candidates = models.JSONField(default=list, blank=True)  # D_c: [[scan_id, z, score], ...] most uncertain first
    selected = models.JSONField(default=list, blank=True)  # D_r: [[scan_id, z], ...] in the order chosen
    stop_reached = models.BooleanField(default=False)  # the project's stopping rule held after this step
    transitions = models.JSONField(default=list, blank=True)  # [{"state", "at"}, ...]
    # What the phases cost: {"inferring": {"seconds", "first_model_seconds", "slices", "slice_passes",
    # "network_pixels"}}; the next step's estimate is made from it (steps.selectors.step_cost_estimate).
    costs = models.JSONField(default=dict, blank=True)
    # Eq. 7's guard for this step (mltasks.guard.GuardDecision.to_dict() and the rule): which
    # unqueried pixels take the model's label, or whole slices while the model is not trusted.
    guard = models.JSONField(default=dict, blank=True)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "number"]
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="step_number_unique_in_project")]

    def __str__(self) -> str:
        return f"step {self.number} of {self.project}: {self.state}"


class Query(models.Model):
    """The pixels of one slice sent to an expert, with the prediction for the rest."""

    class Status(models.TextChoices):
        OPEN = "open", "open"
        ANSWERED = "answered", "answered"
        WITHDRAWN = "withdrawn", "withdrawn"  # its step was cancelled or failed

    step = models.ForeignKey(AcquisitionStep, on_delete=models.CASCADE, related_name="queries")
    scan = models.ForeignKey("imaging.Scan", on_delete=models.CASCADE, related_name="+")
    z = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    width = models.PositiveIntegerField()
    mask = models.BinaryField()  # packbits of the queried pixels
    predicted = models.BinaryField()  # zlib uint8 predicted labels of every pixel
    uncertainty = models.BinaryField()  # zlib float16 pixel uncertainty u
    n_queried = models.PositiveIntegerField()
    n_pixels = models.PositiveIntegerField()
    # Unqueried pixels whose predicted label joins the training set (Eq. 7 under the step's
    # guard), and how many of those differ from the scan's reference labels (None: no reference).
    n_auto_labelled = models.PositiveIntegerField(default=0)
    n_auto_wrong = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    # The lock: at most one annotator works on a query until lock_expires.
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    lock_expires = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # The answer: uint8 labels of the queried pixels only, in raster order, zlib-compressed.
    answer = models.BinaryField(null=True, blank=True)
    answered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    answered_at = models.DateTimeField(null=True, blank=True)
    seconds_spent = models.FloatField(null=True, blank=True)  # reported by the annotator's client
    # Pointer presses, keys and clicks that changed or confirmed labels, counted by the annotator's
    # client: with n_queried, the input cost of an answered pixel (docs/annotator.md).
    input_events = models.PositiveIntegerField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["step", "id"]
        constraints = [models.UniqueConstraint(fields=["step", "scan", "z"], name="one_query_per_slice_and_step")]
        indexes = [
            models.Index(fields=["step", "status"]),
            # Claiming: the oldest open query of a step, and the caller's own open query,
            # found without reading every open query of the step (queries_sql.claim_next).
            models.Index(fields=["step", "id"], condition=models.Q(status="open"), name="query_open_by_step"),
            models.Index(fields=["assignee"], condition=models.Q(status="open"), name="query_open_by_assignee"),
        ]

    def __str__(self) -> str:
        return f"query {self.pk}: {self.scan_id}/{self.z} ({self.status})"

    @property
    def mac(self) -> float:
        """Manual annotation cost of this slice (Eq. 8)."""
        return self.n_queried / self.n_pixels if self.n_pixels else 0.0


class TrainingSlice(models.Model):
    """One slice of the project's training set, with every pixel's provenance."""

    class Source(models.TextChoices):
        REFERENCE = "reference", "reference label map"
        QUERY = "query", "answered query"

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="training_slices")
    scan = models.ForeignKey("imaging.Scan", on_delete=models.CASCADE, related_name="+")
    z = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    width = models.PositiveIntegerField()
    labels = models.BinaryField()  # zlib uint8; 255 = unlabelled (ignored by the loss)
    answered = models.BinaryField()  # packbits: True where a person gave the label, False where it was predicted
    source = models.CharField(max_length=10, choices=Source.choices)
    query = models.OneToOneField(Query, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    step = models.ForeignKey(AcquisitionStep, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "scan", "z"]
        constraints = [models.UniqueConstraint(fields=["project", "scan", "z"], name="one_training_slice_per_z")]

    def __str__(self) -> str:
        return f"training slice {self.scan_id}/{self.z} ({self.source})"


class ModelVersion(models.Model):
    """The network trained by one step: checkpoint, configuration, metrics and PDC calibration."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="model_versions")
    step = models.OneToOneField(AcquisitionStep, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="model_version")
    number = models.PositiveIntegerField()
    checkpoint = models.FileField(upload_to="acquisition/models/")
    config = models.JSONField(default=dict)  # NetConfig.to_dict() + training options
    training = models.JSONField(default=dict, blank=True)  # slices, epochs, final loss...
    # Filled by evaluating (steps.accuracy.accuracy_metrics): {"evaluated_on", "structures": {value: {"name",
    # "kind", "dice", "asd", "psv", "predicted_dice", "status", "reasons"}}, "rows", "uncertainty",
    # "stopping_rule", "status", "reasons", ...}; every metric has a status ("ok" or "unavailable" + reason).
    metrics = models.JSONField(default=dict, blank=True)
    calibration = models.JSONField(null=True, blank=True)  # PDCCalibration.to_dict()
    # Where the model came from: {"kind": "trained"} by a step, "project" (copied from another
    # project's model) or "upload" (a checkpoint file); see outputs/model_import.py.
    origin = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "number"]
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="model_number_unique_in_project")]

    def __str__(self) -> str:
        return f"model {self.number} of {self.project}"


class Segmentation(models.Model):
    """A scan segmented on demand by a model version: labels, uncertainty and per-muscle report."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="segmentations")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="segmentations")
    scan = models.ForeignKey("imaging.Scan", on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    labels = models.FileField(upload_to="acquisition/segmentations/", blank=True)  # .npy uint8 (z, y, x)
    uncertainty = models.FileField(upload_to="acquisition/segmentations/", blank=True)  # .npy float16 (z, y, x)
    report = models.JSONField(default=list, blank=True)  # mltasks.report.structure_report rows
    error = models.TextField(blank=True)
    # Progress of the worker while running (outputs.segmentation.SegmentationReporter).
    percent = models.FloatField(default=0.0)
    eta_seconds = models.FloatField(null=True, blank=True)
    started = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)  # the last progress written
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"segmentation of {self.scan_id} by {self.model_version}: {self.status}"


class HeldOutSlice(models.Model):
    """A labelled pool slice kept out of training and queries, on which every model is evaluated.

    A lab with one CT has no separate test scan: a few reference slices spread along each
    pool scan stand in for one (docs/acquisition.md, "Measuring accuracy"). The slice and
    its neighbours (``held_out.selectors.HELD_OUT_MARGIN``) are never seeded, queried or
    trained on; its labels are read from the scan's reference label map.
    """

    class Source(models.TextChoices):
        REFERENCE = "reference", "reference label map"

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="held_out_slices")
    scan = models.ForeignKey("imaging.Scan", on_delete=models.CASCADE, related_name="+")
    z = models.PositiveIntegerField()
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.REFERENCE)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "scan", "z"]
        constraints = [models.UniqueConstraint(fields=["project", "scan", "z"], name="one_held_out_slice_per_z")]

    def __str__(self) -> str:
        return f"held-out slice {self.scan_id}/{self.z}"
