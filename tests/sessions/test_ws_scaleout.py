"""Scaling out: two Daphne processes sharing Redis deliver one group's messages to clients
connected to either (DESIGN.md, "Two modes of running").

Needs Redis (the pub/sub channel layer, and the cache that makes tickets one-use across
processes) and PostgreSQL (the servers read the test database, which SQLite keeps in memory).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from websockets.asyncio.client import connect

from sessions import services
from sessions.tickets import ticket_issue
from tests import factories
from tests.sessions.conftest import daphne_servers

pytestmark = [
    pytest.mark.requires_redis,
    pytest.mark.requires_postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_passwords"),
]

def _test_database_url() -> str:
    db = settings.DATABASES["default"]
    credentials = quote(db.get("USER") or "")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"])
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{credentials}@{host}{port}/{db['NAME']}"


async def test_two_daphne_processes_share_a_group(tenant):
    users = [
        await database_sync_to_async(factories.UserFactory)(tenant=tenant, username=f"scale{i}")
        for i in range(2)
    ]
    with daphne_servers(2, REDIS_URL=settings.REDIS_URL, DATABASE_URL=_test_database_url()) as ports:
        clients = []
        try:
            for user, port in zip(users, ports, strict=True):
                ticket = ticket_issue(user_id=user.id, kind="tenant", object_id=tenant.id)
                # A native client: no Origin header, a ticket instead of a cookie.
                clients.append(await connect(f"ws://127.0.0.1:{port}/ws/tenant/?ticket={quote(ticket)}"))

            await database_sync_to_async(services.tenant_announce)(
                tenant_id=tenant.id, text="One message, two servers.", author=None
            )

            for client in clients:
                message = json.loads(await asyncio.wait_for(client.recv(), 5))
                assert message["type"] == "tenant.announcement"
                assert message["data"]["text"] == "One message, two servers."
        finally:
            for client in clients:
                await client.close()
