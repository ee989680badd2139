"""ASGI entry point: HTTP goes to Django, WebSockets to the Channels consumers.

WebSocket routes sit behind `OriginOrTicketValidator`: browser connections must come from an
allowed Origin (and carry the session cookie); native clients send no Origin and authenticate with a
one-use join ticket instead (see `sessions/realtime.py`).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tutor_project.settings")
# Django must be set up before the consumers (and their models) are imported.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import CookieMiddleware, SessionMiddleware  # noqa: E402

from sessions.realtime import OriginOrTicketValidator, WebSocketAuthMiddleware  # noqa: E402
from tutor_project.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": OriginOrTicketValidator(
            CookieMiddleware(
                SessionMiddleware(WebSocketAuthMiddleware(URLRouter(websocket_urlpatterns)))
            )
        ),
    }
)
