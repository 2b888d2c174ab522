"""``manage.py import_ct PATH... --pool NAME``: import CT files from this machine's disk.

Each PATH (a DICOM folder or zip, a single .dcm, NIfTI, MetaImage or NRRD file)
is one input; a folder or zip holding several DICOM series imports each series
as its own scan unless ``--series-uid`` picks one. The job runs here, in this
process, and reports to the websockets like an upload; ``--queue`` hands it to
the ``cpu`` worker instead (which must see the same paths).
"""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from backend.imaging.models import Pool
from backend.imaging.services import (
    ImportInput,
    QueueUnavailable,
    import_job_create,
    import_job_run,
    staging_dir_new,
)
from backend.projects.models import LabelSet


class Command(BaseCommand):
    help = "Import CT volumes (DICOM folder/zip, NIfTI, MHA/MHD, NRRD) into a pool."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--pool", required=True, help="pool name (created if missing)")
        parser.add_argument("--labels", help="reference label map of the (single) CT")
        parser.add_argument("--label-set", help="label set name of --labels (default: the pool's projects' set)")
        parser.add_argument("--labelled-slices", help="comma-separated working-grid z indices of a partial map")
        parser.add_argument("--series-uid", help="import only this SeriesInstanceUID")
        parser.add_argument("--user", help="username recorded as importer")
        parser.add_argument("--queue", action="store_true", help="run on the cpu worker instead of here")

    def handle(self, *args, **options):
        inputs = [self._input(p) for p in options["paths"]]
        labels = self._input(options["labels"]) if options["labels"] else None
        user = self._user(options["user"])
        slices = None
        if options["labelled_slices"]:
            try:
                slices = [int(v) for v in options["labelled_slices"].split(",") if v.strip()]
            except ValueError as exc:
                raise CommandError("--labelled-slices takes comma-separated integers, e.g. 3,10,17") from exc
        label_set = None
        if options["label_set"]:
            label_set = LabelSet.objects.filter(name=options["label_set"]).first()
            if label_set is None:
                known = ", ".join(LabelSet.objects.values_list("name", flat=True))
                raise CommandError(f"no label set named {options['label_set']!r}; known: {known}")
        pool, _ = Pool.objects.get_or_create(name=options["pool"], defaults={"created_by": user})
        try:
            with transaction.atomic():
                job = import_job_create(pool=pool, user=user, inputs=inputs, staging_dir=staging_dir_new(),
                                        label_set=label_set, labels=labels, labelled_slices=slices,
                                        series_uid=options["series_uid"], schedule=options["queue"])
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        except QueueUnavailable as exc:  # --queue with the broker down: the job is failed, retryable
            raise CommandError(f"{exc}; or import again without --queue to run it here") from exc
        if options["queue"]:
            self.stdout.write(f"import job {job.pk} queued on the cpu worker")
            return
        job = import_job_run(job=job, on_progress=self._progress)
        self._report(job)

    def _input(self, raw: str) -> ImportInput:
        path = Path(raw).expanduser().resolve()
        if not path.exists():
            raise CommandError(f"{raw}: no such file or folder")
        return ImportInput(path=path, name=Path(raw).name or str(path))

    def _user(self, username: str | None):
        if not username:
            return None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        return user

    def _progress(self, percent: float, name: str, status: str) -> None:
        if status == "running" and name:
            self.stdout.write(f"{percent:5.1f}% {name}")

    def _report(self, job) -> None:
        failed = [r for r in job.results if r["status"] != "imported"]
        for r in job.results:
            if r["status"] == "imported":
                self.stdout.write(self.style.SUCCESS(f"imported {r['name']} as scan {r['scan_id']}"))
                if r.get("warning"):
                    self.stdout.write(self.style.WARNING(f"WARNING {r['warning']}"))
            else:
                self.stderr.write(f"FAILED {r['error']}")
        if failed:
            raise CommandError(f"{len(failed)} of {len(job.results)} imports failed (job {job.pk})")
