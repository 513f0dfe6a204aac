"""Local services for development and tests: PostgreSQL+TimescaleDB and Mosquitto.

``LocalServices(settings).up()`` starts both (idempotent), ``.down()`` stops them, ``.status()``
reports them; failures raise :class:`ServiceError` with a one-line cause and fix.
"""

from ioc.services.base import ServiceError, ServiceStatus
from ioc.services.manager import LocalServices

__all__ = ["LocalServices", "ServiceError", "ServiceStatus"]
