"""Projects, their members and roles, and label sets."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

# Created by migration 0002 (which keeps its own copy of the name, as migrations must).
DEFAULT_LABEL_SET_NAME = "Hip and thigh (Hiasa 2019)"


class LabelSet(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Label(models.Model):
    class Side(models.TextChoices):
        NONE = "", "none"
        LEFT = "left", "left"
        RIGHT = "right", "right"

    label_set = models.ForeignKey(LabelSet, on_delete=models.CASCADE, related_name="labels")
    value = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(254)])
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, default="muscle")  # "bone", "muscle" or anything a project defines
    colour = models.CharField(max_length=7, validators=[RegexValidator(r"^#[0-9a-fA-F]{6}$")])
    side = models.CharField(max_length=5, choices=Side.choices, default=Side.NONE, blank=True)
    # The mirror structure (left <-> right); a flip during augmentation swaps the two.
    pair = models.OneToOneField("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["label_set", "value"]
        constraints = [
            models.UniqueConstraint(fields=["label_set", "value"], name="label_value_unique_in_set"),
            models.UniqueConstraint(fields=["label_set", "name"], name="label_name_unique_in_set"),
        ]

    def __str__(self) -> str:
        return f"{self.value}: {self.name}"


class Project(models.Model):
    class Strategy(models.TextChoices):
        TAU = "tau", "uncertain pixels (tau)"
        MANUAL = "manual", "fully manual slices"
        RANDOM_PIXELS = "random_pixels", "random pixels"
        RANDOM_SLICES = "random_slices", "random slices"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    label_set = models.ForeignKey(LabelSet, on_delete=models.PROTECT, related_name="projects")
    pools = models.ManyToManyField("imaging.Pool", related_name="projects", blank=True)
    test_scans = models.ManyToManyField("imaging.Scan", related_name="test_of_projects", blank=True)
    # Network: a named profile of mltasks.nets plus overrides (width, depth, matrix...).
    network_profile = models.CharField(max_length=30, default="fast")
    network_config = models.JSONField(default=dict, blank=True)
    # Active learning (method.md §4): defaults follow the paper where it gives one.
    strategy = models.CharField(max_length=20, choices=Strategy.choices, default=Strategy.TAU)
    tau = models.FloatField(default=2.5e-3, validators=[MinValueValidator(0.0)])
    slices_per_step = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1)])
    k_uncertain = models.PositiveIntegerField(default=50, validators=[MinValueValidator(1)])
    mc_samples = models.PositiveIntegerField(default=10, validators=[MinValueValidator(2), MaxValueValidator(100)])
    stop_target_dice = models.FloatField(null=True, blank=True,
                                         validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", "admin"
        LEAD = "lead", "lead"
        ANNOTATOR = "annotator", "annotator"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_project")]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.project}"


# Roles that include another's rights: an admin may do what a lead may, and so on.
ROLE_RANK = {Membership.Role.ANNOTATOR: 1, Membership.Role.LEAD: 2, Membership.Role.ADMIN: 3}
