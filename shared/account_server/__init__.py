"""Pick the Account Server implementation from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from shared.account_server.base import AccountServer
    from shared.config import Settings


def create_account_server(settings: "Settings", engine: "Engine") -> "AccountServer":
    if settings.account_server_url:
        from shared.account_server.http import HttpAccountServer

        return HttpAccountServer(settings)
    from shared.account_server.ledger import LedgerAccountServer

    return LedgerAccountServer(settings, engine)
