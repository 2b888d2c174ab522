"""An archive's password, encrypted at rest (Fernet: AES-128-CBC with an HMAC).

The key is ``MYOLABEL_PACS_KEY`` when set, else one derived from ``SECRET_KEY``; either way
it is stretched through HKDF, so any string serves. A database dump alone therefore does not
give the PACS password away. Changing the key makes the stored passwords unreadable: the
archive then answers ``credentials_unreadable`` until an administrator enters them again.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class CredentialsUnreadable(Exception):
    """The stored password was encrypted with another key (MYOLABEL_PACS_KEY or SECRET_KEY changed)."""


def _fernet() -> Fernet:
    secret = settings.MYOLABEL_PACS_KEY or settings.SECRET_KEY
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"myolabel-pacs", info=b"archive-password").derive(
        secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_password(password: str) -> str:
    """The token stored for ``password`` ('' for no password)."""
    return _fernet().encrypt(password.encode()).decode() if password else ""


def decrypt_password(token: str, *, archive_name: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        msg = (f"the password of archive {archive_name!r} cannot be read with this server's key "
               "(MYOLABEL_PACS_KEY or SECRET_KEY changed); enter it again on the administration page")
        raise CredentialsUnreadable(msg) from exc
