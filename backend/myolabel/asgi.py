"""ASGI entry point: HTTP through Django, websockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.myolabel.settings")
os.environ.setdefault("MYOLABEL_DB_POOL", "true")  # web processes pool PostgreSQL connections
django_asgi_app = get_asgi_application()

# Imported after Django is set up: the routing imports models.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from backend.core.wsauth import TokenOrSessionAuthMiddleware  # noqa: E402
from backend.imaging.slice_fastpath import SliceFastPath  # noqa: E402
from backend.myolabel.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": SliceFastPath(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(
            TokenOrSessionAuthMiddleware(URLRouter(websocket_urlpatterns))
        ),
    }
)
