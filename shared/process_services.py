"""What a function process shares across requests: the settings and the collaborators built from them.

Each collaborator is built on first use, so a cold start imports only what its requests need
(the api's /version never loads SQLAlchemy; kew never builds an Account Server client).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from shared.config import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from shared.account_server.base import AccountServer
    from shared.auth.verify import TokenVerifier
    from shared.launchers.base import Launcher
    from shared.storage.base import Storage


class ProcessServices:
    def __init__(self, settings: Settings | None = None):
        if settings is not None:
            self.settings = settings  # otherwise read from the environment on first use

    @functools.cached_property
    def settings(self) -> Settings:
        return get_settings()

    @functools.cached_property
    def engine(self) -> "Engine":
        from shared.db.session import get_engine

        return get_engine(self.settings.sqlalchemy_url)

    @functools.cached_property
    def storage(self) -> "Storage":
        from shared.storage import create_routed_storage

        settings = self.settings
        return create_routed_storage(str(settings.project_volume_path), settings.dataset_store_url,
                                     settings.s3_endpoint_url)

    @functools.cached_property
    def account_server(self) -> "AccountServer":
        from shared.account_server import create_account_server

        return create_account_server(self.settings, self.engine)

    @functools.cached_property
    def launcher(self) -> "Launcher":
        from shared.launchers import launcher_for

        return launcher_for(self.settings)

    @functools.cached_property
    def verifier(self) -> "TokenVerifier":
        from shared.auth.verify import create_verifier

        # The local stack's provider, served in this process, hands over its keys directly:
        # asking our own server for them can wait behind the requests that need them. Keycloak's
        # are fetched over HTTP.
        return create_verifier(self.settings)
