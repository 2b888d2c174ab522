"""Static files: hashed, compressed names once collected, plain names before; served by WhiteNoise."""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from whitenoise.middleware import WhiteNoiseMiddleware
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


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise's middleware, able to run in the asynchronous middleware chain.

    WhiteNoise's own middleware is synchronous only. Under ASGI, Django then runs the
    middleware above it in one thread, hops back to the event loop for the middleware
    below it, and hops to a thread again for the view: three thread switches per API
    request. Finding a static file is a dictionary lookup (a stat with autorefresh),
    so doing it on the event loop costs nothing, and the chain stays asynchronous down
    to the view.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response, settings=settings):
        super().__init__(get_response, settings)
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self._async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request):
        static_file = self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)
        if static_file is not None:
            return self.serve(static_file, request)
        return await self.get_response(request)
