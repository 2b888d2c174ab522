"""DICOMweb archives (PACS): configured by the site's administrators, searched (QIDO-RS) and
read (WADO-RS) to import CT series into a pool through the upload's import path; the send of a
DICOM-SEG (STOW-RS) lives with the exports, in ``backend.acquisition.outputs.pacs_send``.

secrets.py   the archive password, encrypted at rest
client.py    a dicomweb-client for an archive, and its errors in words an administrator can act on
services.py  archive writes; the import job that retrieves series and hands them to the importer
selectors.py QIDO searches (studies, series) as plain rows
apis.py      the views; urls.py mounts them under /api/pacs/
"""
