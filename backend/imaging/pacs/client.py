"""A dicomweb-client for an archive, and what goes wrong talking to it, in words an administrator
can act on (``PacsError`` and its kinds, answered by the API with their own codes).

Every call to an archive goes through ``pacs_call``, which turns the network and HTTP errors of
``requests`` into those kinds; nothing else of the product speaks HTTP to a PACS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import requests
from dicomweb_client.api import DICOMwebClient
from django.conf import settings

from backend.imaging.pacs.secrets import decrypt_password

if TYPE_CHECKING:  # annotations only
    from backend.imaging.models import DicomWebArchive

T = TypeVar("T")
# Retrieve instances as the archive keeps them: asking for a transfer syntax makes the archive
# transcode, which fails for compressed images it cannot decode (Orthanc answers 500 for JPEG 2000).
ANY_TRANSFER_SYNTAX = (("application/dicom", "*"),)


class PacsError(Exception):
    """The archive could not do what was asked; the message says why and what to check."""


class PacsUnreachable(PacsError):
    """No answer (refused, unknown host, timeout, TLS failure)."""


class PacsRefused(PacsError):
    """The archive answered 401 or 403: the user name or password is wrong, or lacks the right."""


class PacsNotDicomWeb(PacsError):
    """The URL answers, but not as a DICOMweb service (404, HTML, an unreadable body)."""


class _Session(requests.Session):
    """Sends QIDO's wildcard ``*`` as itself rather than ``%2A``.

    dicomweb-client percent-encodes every query value, and Orthanc (1.10, DICOMweb 1.7) then
    matches ``%2A001%2A`` literally: a search for part of a name finds nothing. ``*`` is a
    legal character of a URL query (RFC 3986 sub-delims), so every archive reads it alike.
    """

    def send(self, request, **kwargs):
        if request.url and "%2A" in request.url:
            request.url = request.url.replace("%2A", "*")
        return super().send(request, **kwargs)


def archive_client(*, url: str, username: str = "", password: str = "") -> DICOMwebClient:
    session = _Session()
    if username or password:
        session.auth = (username, password)
    client = DICOMwebClient(url.rstrip("/"), session=session, timeout=settings.MYOLABEL_PACS_TIMEOUT)
    # One retry at most on 429/503/504: a person waits for the answer of a search.
    client.set_http_retry_params(retry=True, max_attempts=2, wait_exponential_multiplier=500)
    return client


def client_for(archive: DicomWebArchive) -> DICOMwebClient:
    """A client for a stored archive, its password decrypted (CredentialsUnreadable if it cannot be)."""
    password = decrypt_password(archive.password_encrypted, archive_name=archive.name)
    return archive_client(url=archive.url, username=archive.username, password=password)


def pacs_call(what: str, url: str, call: Callable[[], T]) -> T:
    """``call()``, its network and HTTP errors raised as PacsError kinds naming ``what`` and ``url``."""
    try:
        return call()
    except requests.HTTPError as exc:
        raise _http_error(what, url, exc.response) from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        reason = "it did not answer in time" if isinstance(exc, requests.Timeout) else "the connection failed"
        msg = (f"{what}: the archive at {url} cannot be reached ({reason}); check the address and port, "
               "and that this server may connect to it")
        raise PacsUnreachable(msg) from exc
    except (ValueError, KeyError) as exc:  # a body that is not DICOM JSON or multipart DICOM
        msg = (f"{what}: the answer of {url} is not DICOMweb ({type(exc).__name__}); "
               "check that the address is the archive's DICOMweb root (for Orthanc: http://host:8042/dicom-web)")
        raise PacsNotDicomWeb(msg) from exc


def _http_error(what: str, url: str, response: requests.Response | None) -> PacsError:
    code = response.status_code if response is not None else 0
    if code in (401, 403):
        return PacsRefused(f"{what}: the archive at {url} refused the user name or password (HTTP {code}); "
                           "check the credentials and the user's rights in the PACS")
    if code in (404, 405):
        return PacsNotDicomWeb(f"{what}: {url} has no DICOMweb service there (HTTP {code}); give the "
                               "DICOMweb root (for Orthanc: http://host:8042/dicom-web)")
    body = (response.text[:200].strip() if response is not None else "") or "no details"
    return PacsError(f"{what}: the archive at {url} answered HTTP {code} ({body})")
