"""Static files storage: hashed, compressed names once collected; plain names before."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class CollectedOrPlainStaticFilesStorage(CompressedManifestStaticFilesStorage):
    """WhiteNoise's manifest storage that does not fail before ``collectstatic``.

    ``manage.py up`` and deployments collect static files, and pages then use hashed,
    cacheable names. A checkout where nothing was collected yet (tests, ``runserver``)
    gets the plain name, which WhiteNoise serves from the app folders (USE_FINDERS).
    """

    manifest_strict = False

    def stored_name(self, name: str) -> str:
        try:
            return super().stored_name(name)
        except ValueError:
            return name
