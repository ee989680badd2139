"""Every WebSocket route of the project, gathered from the apps' `routing.py`."""

from sessions.routing import websocket_urlpatterns as sessions_routes

websocket_urlpatterns = [*sessions_routes]
