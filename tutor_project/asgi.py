"""ASGI entry point: HTTP goes to Django, WebSockets to the Channels consumers.

WebSocket routes sit behind `OriginOrTicketValidator`: a browser connection from a foreign Origin
is rejected at the handshake (HTTP 403); browsers from an allowed Origin authenticate with the
session cookie, native clients send no Origin and present a one-use join ticket instead.
`WebSocketAuthMiddleware` turns either into `scope["user"]` (see `sessions/realtime.py`); the
consumers then authorise and close with 4401/4403/4404 (docs/protocol.md).
"""

import gc
import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tutor_project.settings")
# Django must be set up before the consumers (and their models) are imported.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from sessions.realtime import OriginOrTicketValidator, WebSocketAuthMiddleware  # noqa: E402
from tutor_project.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # No Cookie/SessionMiddleware: WebSocketAuthMiddleware reads the session cookie itself
        # and, unlike them, does not wrap `send` for every delivered message.
        "websocket": OriginOrTicketValidator(
            WebSocketAuthMiddleware(URLRouter(websocket_urlpatterns))
        ),
    }
)

# Everything loaded so far (Django, apps, templates' modules) lives as long as the process: move
# it out of the cyclic collector's reach, so a full collection during a request walks only what
# requests made. It cut the monitor page's p95 at 50 rooms from ~125 to ~80 ms (bench/monitor_page.py).
gc.collect()
gc.freeze()

# The interpreter's thread switch interval (default 5 ms). With offline speech recognition the
# event loop shares the GIL with the decoder pool's helper threads and the database thread, and
# waits up to one interval to get it back: bench/audio_ingest.py --through daphne measured frame
# queueing p99 149.6 -> 5.1 ms at 25 speakers with 0.5 ms (docs/benchmarks.md). Unset: Python's.
from django.conf import settings  # noqa: E402

if settings.PYTHON_SWITCH_INTERVAL_MS:
    sys.setswitchinterval(settings.PYTHON_SWITCH_INTERVAL_MS / 1000)
