"""Every WebSocket route of the project, gathered from the apps' `routing.py`."""

from django.urls import re_path

from sessions.realtime import close_unknown_route
from sessions.routing import websocket_urlpatterns as sessions_routes

websocket_urlpatterns = [
    *sessions_routes,
    # Last: an unknown path is closed with 4404 (not a "No route found" error in the log).
    re_path(r"", close_unknown_route),
]
