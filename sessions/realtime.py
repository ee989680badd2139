"""Placeholder replaced by the real-time base."""


class OriginOrTicketValidator:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        return await self.app(scope, receive, send)


WebSocketAuthMiddleware = OriginOrTicketValidator
