"""The demo seeder builds a ready phantom project once, whatever the number of calls."""

from __future__ import annotations

import pytest

from backend.acquisition.demo import phantom_project
from backend.acquisition.models import TrainingSlice
from backend.projects.models import Membership
from tests.backend.factories import UserFactory, use_tmp_storage

pytestmark = pytest.mark.django_db


def test_phantom_project_is_idempotent_and_ready_for_a_step(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)
    admin = UserFactory(username="admin")
    first = phantom_project(name="demo", admin=admin, n_pool=2, n_test=1, shape=(10, 32, 32), seed_fraction=0.2)
    again = phantom_project(name="demo", admin=admin, n_pool=2, n_test=1, shape=(10, 32, 32), seed_fraction=0.2)
    assert again.pk == first.pk
    pool = first.pools.get()
    assert sorted(pool.scans.values_list("name", flat=True)) == ["phantom-1", "phantom-2", "phantom-3"]
    assert list(first.test_scans.values_list("name", flat=True)) == ["phantom-3"]
    assert all(scan.reference_labels.get().labelled_slices == list(range(10)) for scan in pool.scans.all())
    # 20 % of 10 slices, evenly spaced, in each of the two pool scans; none from the test scan.
    rows = TrainingSlice.objects.filter(project=first)
    assert rows.count() == 4
    assert set(rows.values_list("scan__name", flat=True)) == {"phantom-1", "phantom-2"}
    assert Membership.objects.get(project=first, user=admin).role == Membership.Role.ADMIN
