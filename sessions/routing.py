"""WebSocket routes of the sessions app."""

websocket_urlpatterns: list = []
