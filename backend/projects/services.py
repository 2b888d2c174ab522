"""Writes of projects, memberships and label sets (pools: ``backend.imaging.services_pools``).

Callers have checked access already (``backend.projects.access``); the rules about a
pool as a whole (attaching, deleting) are checked here, since they concern other
projects than the one the caller acts on. Rule violations raise
``django.core.exceptions.ValidationError`` keyed by field, with messages a project lead
can act on and that name nothing the caller cannot see; the API turns them into 400.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404

from backend.core.file_cleanup import delete_with_files
from backend.core.names import check_unique_name
from backend.imaging.models import Pool, Scan
from backend.projects import access
from backend.projects.models import Label, LabelSet, Membership, Project

if TYPE_CHECKING:  # annotations only
    from django.contrib.auth.models import User

Role = Membership.Role

# Project fields a lead may change (the label set is fixed at creation: training data depends on it).
CONFIG_FIELDS = ("name", "description", "network_profile", "network_config", "strategy", "tau",
                 "slices_per_step", "k_uncertain", "mc_samples", "stop_target_dice")


# Bounds that keep a configured network trainable on the machines MyoLabel targets:
# architecture keys (mltasks.nets.NetConfig), then training keys (mltasks.train.TrainConfig).
_NETWORK_LIMITS: dict[str, tuple[type, float, float]] = {
    "width": (int, 1, 256), "depth": (int, 1, 8), "matrix": (int, 16, 1024), "dropout": (float, 0.0, 0.95),
    "lr": (float, 1e-7, 1.0), "batch_size": (int, 1, 256), "max_epochs": (int, 1, 10_000),
    "patience": (int, 0, 10_000), "val_fraction": (float, 0.0, 0.9), "dice_weight": (float, 0.0, 100.0),
    "augment": (bool, 0, 1), "val_samples": (int, 1, 100), "seed": (int, 0, 2**31 - 1),
    "warm_start": (bool, 0, 1), "min_batches_per_epoch": (int, 0, 10_000), "adapt_imported": (bool, 0, 1),
    "keep_best_min_val": (int, 0, 1000),
    "max_seconds": (float, 0.0, 7 * 86_400.0), "pixel_mm": (float, 0.25, 10.0),
    "first_max_epochs": (int, 1, 10_000), "first_max_seconds": (float, 0.0, 7 * 86_400.0),
    "label_rule": (str, 0, 0), "patience_rule": (str, 0, 0), "augment_preset": (str, 0, 0),
}
# Choices of the string options: mltasks.guard.RULES (Eq. 7 with the guard, the paper's, never),
# mltasks.train.PATIENCE_RULES and AUGMENT_PRESETS (tests/backend keep them in step).
_NETWORK_CHOICES = {"label_rule": ("guard", "paper", "masked"), "patience_rule": ("val_and_loss", "val"),
                    "augment_preset": ("within_scan", "paper")}
_ARCHITECTURE_KEYS = ("width", "depth", "matrix", "dropout")


def _option_error(key: str, value) -> str | None:
    kind, low, high = _NETWORK_LIMITS[key]
    if kind is str:
        choices = _NETWORK_CHOICES[key]
        return None if value in choices else f"Network option {key!r} must be one of {', '.join(choices)}, not {value!r}."
    if kind is bool:
        return None if isinstance(value, bool) else f"Network option {key!r} must be true or false, not {value!r}."
    accepted = (int, float) if kind is float else (int,)
    if isinstance(value, bool) or not isinstance(value, accepted):
        return f"Network option {key!r} must be {'a number' if kind is float else 'an integer'}, not {value!r}."
    if not low <= value <= high:
        return f"Network option {key!r} must be between {low} and {high}, not {value}."
    return None


def _network_errors(profile_name: str, overrides: dict, *, n_classes: int) -> list[str]:
    # Imported here: mltasks.nets pulls in torch, which the web process needs only for this check.
    from mltasks.errors import MyoLabelError
    from mltasks.nets import PROFILES, profile

    if profile_name not in PROFILES:
        return [f"Unknown network profile {profile_name!r}; choose one of {', '.join(PROFILES)}."]
    unknown = sorted(set(overrides) - set(_NETWORK_LIMITS))
    if unknown:
        return [f"Unknown network option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_NETWORK_LIMITS))}."]
    errors = [e for e in (_option_error(k, v) for k, v in overrides.items()) if e]
    if errors:
        return errors
    architecture = {k: v for k, v in overrides.items() if k in _ARCHITECTURE_KEYS}
    try:
        profile(profile_name, n_classes=max(n_classes, 2), **architecture)
    except (MyoLabelError, TypeError, ValueError) as exc:
        return [f"Invalid network configuration: {exc}."]
    return []


def _check_attachable(user: User, pools: Iterable[Pool], *, already: set[int]) -> None:
    """Refuse attaching a pool unless ``user`` administers every project using it.

    Pools the user cannot see never get here (the API resolves ids among visible pools,
    so a foreign id answers like a missing one). Pools already attached are kept freely.
    """
    refused = [pool.pk for pool in pools if pool.pk not in already and not access.administers_pool(user, pool)]
    if refused:
        listed = ", ".join(map(str, sorted(refused)))
        msg = (f"You cannot attach pool {listed}: attaching a pool needs the admin role in every project that "
               "uses it. Ask an admin of those projects to attach it, or a site administrator.")
        raise ValidationError({"pools": [msg]})


# Checks other apps make before scans become test scans of a project (the acquisition app
# refuses a scan a model was trained on): each returns sentences, none when they may.
TestScanCheck = Callable[[Project, list[Scan]], list[str]]
_TEST_SCAN_CHECKS: list[TestScanCheck] = []


def register_test_scan_check(check: TestScanCheck) -> None:
    """Called by an app's ``ready()``; ``projects`` imports no app above it."""
    if check not in _TEST_SCAN_CHECKS:
        _TEST_SCAN_CHECKS.append(check)


def _check_test_scans(project: Project, test_scans: Iterable[Scan], pools: Iterable[Pool],
                      added: list[Scan]) -> None:
    pool_ids = {pool.pk for pool in pools}
    outside = [scan for scan in test_scans if scan.pool_id not in pool_ids]
    if outside:
        listed = ", ".join(f"{scan.pk} ({scan.name})" for scan in outside)
        msg = f"Test scan(s) {listed} are not in any pool of this project; add their pools first."
        raise ValidationError({"test_scans": [msg]})
    problems = [msg for check in _TEST_SCAN_CHECKS for msg in check(project, added)] if added and project.pk else []
    if problems:
        raise ValidationError({"test_scans": problems})


def test_scan_notices(added: list[Scan]) -> list[str]:
    """What marking scans as test scans does, said when it is done: they leave the pool."""
    return [f"Scan {scan.pk} ({scan.name}) is now a test scan: it leaves the pool, so it is no longer queried, "
            "its reference labels no longer seed the training set and none of its slices can be held out; each "
            "step's model is evaluated on it whole. If it is the lab's only labelled CT, keep it in the pool "
            "instead (remove it from test_scans) and hold out slices of it to measure accuracy."
            for scan in sorted(added, key=lambda scan: scan.pk)]


def _apply_config(project: Project, fields: dict) -> None:
    unknown = set(fields) - set(CONFIG_FIELDS)
    if unknown:
        raise ValueError(f"not project configuration fields: {', '.join(sorted(unknown))}")
    for name, value in fields.items():
        setattr(project, name, value)
    errors = _network_errors(project.network_profile, project.network_config or {},
                             n_classes=project.label_set.labels.count() + 1)
    if errors:
        raise ValidationError({"network_config" if "network_config" in fields else "network_profile": errors})
    check_unique_name(Project, project.name, exclude_pk=project.pk)
    project.full_clean(exclude=["pools", "test_scans", "created_by"])


@transaction.atomic
def project_create(*, user: User, name: str, label_set: LabelSet, pools: list[Pool] | None = None,
                   test_scans: list[Scan] | None = None, **config) -> Project:
    """Create a project; its creator becomes its admin."""
    project = Project(label_set=label_set, created_by=user)
    _check_attachable(user, pools or [], already=set())
    _apply_config(project, {"name": name, **config})
    _check_test_scans(project, test_scans or [], pools or [], added=list(test_scans or []))
    project.save()
    project.pools.set(pools or [])
    project.test_scans.set(test_scans or [])
    Membership.objects.create(project=project, user=user, role=Role.ADMIN)
    project.notices = test_scan_notices(list(test_scans or []))
    return project


@transaction.atomic
def project_update(*, project: Project, user: User, pools: list[Pool] | None = None,
                   test_scans: list[Scan] | None = None, **config) -> Project:
    """Change a project's configuration; ``None`` leaves pools or test scans as they are.

    ``project.notices`` then holds what the change did that the lead must hear at once
    (scans that became test scans left the pool).
    """
    if pools is not None:
        _check_attachable(user, pools, already=set(project.pools.values_list("pk", flat=True)))
    _apply_config(project, config)
    new_pools = list(project.pools.all()) if pools is None else pools
    old_tests = set(project.test_scans.values_list("pk", flat=True))
    new_tests = list(project.test_scans.all()) if test_scans is None else test_scans
    added = [scan for scan in new_tests if scan.pk not in old_tests]
    _check_test_scans(project, new_tests, new_pools, added=added)
    project.save()
    if pools is not None:
        project.pools.set(pools)
    if test_scans is not None:
        project.test_scans.set(test_scans)
    project.notices = test_scan_notices(added)
    return project


@transaction.atomic
def project_delete(*, project: Project) -> None:
    """Delete a project with its memberships, steps and models (files too); its pools and scans stay."""
    delete_with_files(project)


def _admins_left(project: Project, *, without: Membership) -> int:
    return project.memberships.filter(role=Role.ADMIN).exclude(pk=without.pk).count()


def _note_unknown_username(by) -> None:
    key = access.unknown_usernames_key(by)
    cache.add(key, 0, timeout=access.UNKNOWN_USERNAMES_WINDOW)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr: start a new window
        cache.set(key, 1, timeout=access.UNKNOWN_USERNAMES_WINDOW)


@transaction.atomic
def membership_add(*, project: Project, username: str, role: str, by) -> Membership:
    """Add an existing user; ``by`` (the admin adding) spends budget on names that do not exist."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        _note_unknown_username(by)
        raise ValidationError({"username": [f"No user named {username!r}; check the spelling, or ask a site "
                                            "administrator to create the account."]})
    if Membership.objects.filter(project=project, user=user).exists():
        raise ValidationError({"username": [f"{username} is already a member; change their role instead."]})
    return Membership.objects.create(project=project, user=user, role=role)


@transaction.atomic
def membership_set_role(*, membership: Membership, role: str) -> Membership:
    if membership.role == Role.ADMIN and role != Role.ADMIN and not _admins_left(membership.project,
                                                                                without=membership):
        raise ValidationError({"role": ["This is the project's last admin; make someone else admin first."]})
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    if membership.role == Role.ADMIN and not _admins_left(membership.project, without=membership):
        raise ValidationError({"user": ["This is the project's last admin; make someone else admin first."]})
    membership.delete()


@transaction.atomic
def label_set_create(*, name: str, description: str = "", labels: list[dict]) -> LabelSet:
    """Create a label set; each label is {value, name, kind, colour, side, pair (value of its twin)}."""
    check_unique_name(LabelSet, name, exclude_pk=None)
    values = [item["value"] for item in labels]
    names = [item["name"] for item in labels]
    for what, seen in (("value", values), ("name", names)):
        duplicates = sorted({str(v) for v in seen if seen.count(v) > 1})
        if duplicates:
            raise ValidationError({"labels": [f"Label {what}(s) {', '.join(duplicates)} appear more than once."]})
    pairs = {item["value"]: item.get("pair") for item in labels if item.get("pair") is not None}
    if len(set(pairs.values())) != len(pairs):
        raise ValidationError({"labels": ["Two labels name the same twin in 'pair'; each label has one twin."]})
    for value, twin in pairs.items():
        if twin not in values or twin == value:
            raise ValidationError({"labels": [f"Label {value} is paired with {twin}, which is not another "
                                              "label of this set."]})
    label_set = LabelSet.objects.create(name=name, description=description)
    created = {}
    for item in labels:
        fields = {k: v for k, v in item.items() if k != "pair"}
        created[item["value"]] = Label.objects.create(label_set=label_set, **fields)
    for value, twin in pairs.items():
        created[value].pair = created[twin]
        created[value].save(update_fields=["pair"])
    return label_set


def label_colour_set(*, project: Project, value: int, colour: str, user) -> Label:
    """Give structure ``value`` of ``project``'s label set the colour ``colour`` ("#rrggbb").

    A label set is shared: the caller must administer every project that uses it (or be a
    superuser), else PermissionDenied naming one they do not. Http404 when the set has no such value.
    """
    label_set = project.label_set
    if not user.is_superuser:
        administered = Membership.objects.filter(user=user, role=access.Role.ADMIN).values("project_id")
        other = label_set.projects.exclude(pk__in=administered).order_by("name").first()
        if other is not None:
            raise PermissionDenied(f"The label set \"{label_set.name}\" is also used by project \"{other.name}\", "
                                   "which you do not administer; ask a site administrator to change its colours.")
    label = Label.objects.filter(label_set=label_set, value=value).first()
    if label is None:
        raise Http404(f"The label set \"{label_set.name}\" has no structure of value {value}.")
    label.colour = colour.lower()
    label.save(update_fields=["colour"])
    return label
