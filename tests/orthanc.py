"""A real Orthanc server with its DICOMweb plugin, started for the tests that talk to a PACS.

Each session gets its own instance: a temporary configuration (own storage folder, a free
HTTP port on 127.0.0.1, the DICOM port off, HTTP basic authentication with one test user,
the DICOMweb plugin at ``/dicom-web/``), started from ``/usr/sbin/Orthanc`` and killed at the
end. A system Orthanc the Debian package may have started (port 8042) is never used.

Where Orthanc or its plugin is missing the tests skip and say how to install them; under
``CI=true`` they fail instead, since ``.ci/run`` installs both.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ORTHANC = Path("/usr/sbin/Orthanc")
# Where Debian's orthanc-dicomweb puts the plugin (``dpkg -L orthanc-dicomweb``).
PLUGIN_PATHS = (Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"), Path("/usr/lib/orthanc/libOrthancDicomWeb.so"))
USER, PASSWORD = "myolabel-test", "orthanc-test-password"
START_SECONDS = 30.0


@dataclass
class OrthancServer:
    url: str  # the REST root, e.g. http://127.0.0.1:40123
    username: str
    password: str
    process: subprocess.Popen
    log: Path

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def rest(self, method: str, path: str, **kwargs) -> requests.Response:
        """Orthanc's own REST API (for arranging and inspecting; the product talks DICOMweb)."""
        response = requests.request(method, f"{self.url}{path}", auth=(self.username, self.password),
                                    timeout=30, **kwargs)
        response.raise_for_status()
        return response

    def store_files(self, paths) -> list[str]:
        """Store DICOM files through the REST API; returns Orthanc's instance ids."""
        return [self.rest("POST", "/instances", data=Path(p).read_bytes()).json()["ID"] for p in paths]

    def clear(self) -> None:
        for patient in self.rest("GET", "/patients").json():
            self.rest("DELETE", f"/patients/{patient}")


def _plugin() -> Path | None:
    return next((p for p in PLUGIN_PATHS if p.exists()), None)


def _missing(what: str) -> None:
    msg = (f"{what}: these tests need a real Orthanc with its DICOMweb plugin "
           "(apt-get install orthanc orthanc-dicomweb; .ci/run installs them)")
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_orthanc(folder: Path) -> OrthancServer:
    """Start an Orthanc in ``folder`` and wait until its DICOMweb root answers."""
    plugin = _plugin()
    if not ORTHANC.exists():
        _missing(f"{ORTHANC} is not installed")
    if plugin is None:
        _missing("the Orthanc DICOMweb plugin is not installed")
    port = free_port()
    config = {
        "Name": "MyoLabelTest",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "DicomServerEnabled": False,
        "DicomPort": free_port(),  # unused while the DICOM server is off; never Orthanc's default 4242
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Ssl": False},
        "StableAge": 1,
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = folder / "orthanc.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(ORTHANC), str(folder / "orthanc.json")], stdout=out, stderr=subprocess.STDOUT)
    server = OrthancServer(f"http://127.0.0.1:{port}", USER, PASSWORD, process, log)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"Orthanc exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{server.dicomweb_url}/studies", auth=(USER, PASSWORD), timeout=2).ok:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    stop_orthanc(server)
    pytest.fail(f"Orthanc did not answer within {START_SECONDS:g} s:\n{log.read_text()[-3000:]}")


def stop_orthanc(server: OrthancServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


@pytest.fixture(scope="session")
def orthanc_server(tmp_path_factory):
    """One Orthanc for the session (starting one takes about a second)."""
    folder = tmp_path_factory.mktemp("orthanc")
    server = start_orthanc(folder)
    try:
        yield server
    finally:
        stop_orthanc(server)
        shutil.rmtree(folder / "storage", ignore_errors=True)


@pytest.fixture
def orthanc(orthanc_server):
    """The session's Orthanc, emptied before each test."""
    orthanc_server.clear()
    return orthanc_server


def with_uids(source: Path, target: Path, *, seed: str) -> dict[str, str]:
    """Copies of a series whose anonymisation removed its UIDs, with study, series and SOP instance
    UIDs made from ``seed`` and the file names (an archive refuses instances without them).

    The shared Siemens series lacks all three, and its SOP class UID (taken from the file meta
    header). Pixel data and every other attribute stay as they
    are. Returns {"study": uid, "series": uid}.
    """
    import pydicom
    from pydicom.uid import generate_uid

    target.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(entropy_srcs=[seed, "study"]), generate_uid(entropy_srcs=[seed, "series"])
    for path in sorted(p for p in Path(source).iterdir() if p.is_file()):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = ds.get("StudyInstanceUID") or study
        ds.SeriesInstanceUID = ds.get("SeriesInstanceUID") or series
        ds.SOPInstanceUID = ds.get("SOPInstanceUID") or generate_uid(entropy_srcs=[seed, path.name])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        # Emptied too (a PACS never holds that: it is Type 1); the file meta header still names CT Image Storage.
        ds.SOPClassUID = ds.get("SOPClassUID") or ds.file_meta.MediaStorageSOPClassUID
        ds.save_as(target / path.name, enforce_file_format=True)
    first = pydicom.dcmread(next(target.iterdir()), stop_before_pixels=True)
    return {"study": first.StudyInstanceUID, "series": first.SeriesInstanceUID}


# --- what the PACS tests share ------------------------------------------------------------

SMALL_CT_SHAPE, SMALL_CT_SPACING, SMALL_CT_ORIGIN = (4, 32, 32), (2.0, 10.0, 10.0), (-160.0, -160.0, 10.0)


def small_ct_series(folder: Path, *, box: int, hu_inside: int = 40, **written) -> list[Path]:
    """A 4 x 32 x 32 DICOM series of air with a soft-tissue square ``box`` pixels from each edge."""
    import numpy as np

    from mltasks.geometry import Geometry
    from mltasks.io import write_dicom_series

    geometry = Geometry(shape=SMALL_CT_SHAPE, spacing=SMALL_CT_SPACING, origin=SMALL_CT_ORIGIN)
    hu = np.full(geometry.shape, -1000, np.int16)
    hu[:, box:32 - box, box:32 - box] = hu_inside
    return write_dicom_series(hu, geometry, folder, **written)


@pytest.fixture
def archive(orthanc, db):
    """The test Orthanc as a connected DICOMweb archive of the product."""
    from backend.imaging.models import DicomWebArchive
    from backend.imaging.pacs.secrets import encrypt_password

    return DicomWebArchive.objects.create(name="Test PACS", url=orthanc.dicomweb_url, username=orthanc.username,
                                          password_encrypted=encrypt_password(orthanc.password))


def segmented_dicom_scan(orthanc, folder: Path) -> dict:
    """A DICOM scan whose series ``orthanc`` holds, imported into a new project's pool, and a finished
    segmentation of it (two boxes): {"project", "scan", "seg", "study", "series"}. Needs the database
    and temporary storage (``use_tmp_storage``)."""
    import numpy as np
    import pydicom

    from backend.imaging.models import Scan
    from backend.imaging.services import scan_import_file
    from backend.imaging.volumes import save_array
    from tests.backend.factories import (
        LabelSetFactory,
        PoolFactory,
        ProjectFactory,
        segmentation_with_uncertainty,
    )

    paths = small_ct_series(folder / "ct", box=4, series_description="thigh CT")
    orthanc.store_files(paths)
    pool = PoolFactory()
    project = ProjectFactory(label_set=LabelSetFactory(labels__n=2), pools=[pool])
    [result] = scan_import_file(pool=pool, path=folder / "ct", name="ct")
    scan = Scan.objects.get(pk=result["scan_id"])
    labels = np.zeros(scan.shape, np.uint8)
    labels[:, 5:10, 5:10], labels[1:, 12:18, 12:18] = 1, 2
    seg = segmentation_with_uncertainty(project, scan, np.zeros(scan.shape, np.float16))
    seg.labels = save_array(labels, "acquisition/segmentations/labels.npy")
    seg.save(update_fields=["labels"])
    first = pydicom.dcmread(paths[0])
    return {"project": project, "scan": scan, "seg": seg, "study": first.StudyInstanceUID,
            "series": first.SeriesInstanceUID}


def seg_series_in(orthanc, study: str) -> list:
    """The DICOM-SEG series (QIDO-RS JSON) of ``study`` in ``orthanc``."""
    from backend.imaging.pacs.client import archive_client

    client = archive_client(url=orthanc.dicomweb_url, username=orthanc.username, password=orthanc.password)
    return client.search_for_series(study, search_filters={"Modality": "SEG"})
