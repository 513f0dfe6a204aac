"""LocalServices: start/stop/inspect the local PostgreSQL+TimescaleDB and Mosquitto together.

Used by ``ioc services up|down|status``, by ``ioc dev`` and by the integration-test fixtures
(each with its own state dir and ports). Calls are idempotent and serialised by a lock file in
the state dir, so two processes sharing a state dir do not race.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
from collections.abc import Iterator
from pathlib import Path

from ioc.config import Settings
from ioc.services.base import (
    RunAs,
    ServiceError,
    ServiceStatus,
    fallback_dir,
    log,
    port_free,
    port_taken_error,
    resolve_runtime_dir,
)
from ioc.services.mosquitto import LISTEN_HOST, MosquittoService
from ioc.services.postgres import PG_BIN_DIR, PostgresService


class LocalServices:
    def __init__(self, settings: Settings, *, pg_bin_dir: Path = PG_BIN_DIR) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir.expanduser().absolute()
        self._pg_bin_dir = pg_bin_dir
        self._runtime_dir: Path | None = None

    # ------------------------------------------------------------------------------ paths ---

    @property
    def runtime_dir(self) -> Path:
        """Where the services' files live: the state dir, or /var/lib/ioc/<hash> (root only)."""
        if self._runtime_dir is None:
            self._runtime_dir = self._resolve(create=False)
        return self._runtime_dir

    @property
    def pg_log_path(self) -> Path:
        return self.postgres.log_path

    @property
    def mqtt_log_path(self) -> Path:
        return self.mosquitto.log_path

    @property
    def postgres(self) -> PostgresService:
        return PostgresService(self.settings, self.runtime_dir, self._pg_user(), self._pg_bin_dir)

    @property
    def mosquitto(self) -> MosquittoService:
        return MosquittoService(self.settings, self.runtime_dir, self._mqtt_user())

    # ----------------------------------------------------------------------------- public ---

    def up(self) -> list[ServiceStatus]:
        """Start whatever is not running yet; block until both accept connections."""
        with self._locked(create=True):
            self._runtime_dir = self._resolve(create=True)
            pg, mqtt = self.postgres, self.mosquitto
            pg.preflight()
            mqtt.preflight()
            pg_info = pg.running()
            mqtt_pid = mqtt.running()
            # Every check before anything starts, so a bad port never leaves a half-started pair.
            if pg_info is None:
                if not port_free(LISTEN_HOST, pg.port):
                    raise port_taken_error("PostgreSQL", pg.port, pg.env_var)
            elif pg_info[1] is not None and pg_info[1] != pg.port:
                raise _moved("PostgreSQL", pg_info[1], pg.port, pg.env_var)
            if mqtt_pid is None:
                if not port_free(LISTEN_HOST, mqtt.port):
                    raise port_taken_error("Mosquitto", mqtt.port, mqtt.env_var)
            else:
                running_port = mqtt.configured_port()
                if running_port is not None and running_port != mqtt.port:
                    raise _moved("Mosquitto", running_port, mqtt.port, mqtt.env_var)

            started_pg = False
            if pg_info is None:
                pg.start()
                started_pg = True
            try:
                pg.bootstrap()
                if mqtt_pid is None:
                    mqtt.start()
                elif mqtt.write_files():
                    mqtt.reload()
            except ServiceError as exc:
                if started_pg:
                    pg.stop()
                    raise ServiceError(f"{exc} (PostgreSQL was stopped again)") from None
                raise ServiceError(f"{exc} (PostgreSQL is still running)") from None
            return [pg.status(), mqtt.status()]

    def down(self) -> list[ServiceStatus]:
        """Stop both, in reverse order of start. Idempotent."""
        if not self.state_dir.is_dir():
            return self.status()
        with self._locked(create=False):
            errors: list[str] = []
            for service in (self.mosquitto, self.postgres):
                try:
                    service.stop()
                except (ServiceError, OSError) as exc:
                    errors.append(str(exc))
            if errors:
                raise ServiceError("; ".join(errors))
            return self.status()

    def status(self) -> list[ServiceStatus]:
        return [self.postgres.status(), self.mosquitto.status()]

    def purge(self) -> None:
        """down(), then delete the services' data (state-dir files or the /var/lib fallback)."""
        self.down()
        runtime = self.runtime_dir
        socket_dir = self.postgres.socket_dir
        if not socket_dir.is_relative_to(runtime):  # the short-path socket dir in /tmp
            shutil.rmtree(socket_dir, ignore_errors=True)
        for sub in ("pg", "mosquitto"):
            shutil.rmtree(runtime / sub, ignore_errors=True)
        if runtime != self.state_dir and runtime.parent == fallback_dir(self.state_dir).parent:
            shutil.rmtree(runtime, ignore_errors=True)
            (self.state_dir / "RUNTIME_DIR").unlink(missing_ok=True)
        self._runtime_dir = None

    # ---------------------------------------------------------------------------- helpers ---

    def _pg_user(self) -> RunAs:
        return RunAs.service_user("postgres")

    def _mqtt_user(self) -> RunAs:
        return RunAs.service_user("mosquitto")

    def _resolve(self, *, create: bool) -> Path:
        users = [self._pg_user(), self._mqtt_user()]
        return resolve_runtime_dir(self.state_dir, users, create=create)

    @contextlib.contextmanager
    def _locked(self, *, create: bool) -> Iterator[None]:
        if create:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / ".services.lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _moved(name: str, running: int, wanted: int, env_var: str) -> ServiceError:
    log.warning("service runs on another port", service=name, running=running, wanted=wanted)
    return ServiceError(
        f"{name} from this state dir already runs on port {running}, not {wanted}: "
        f"run `ioc services down` first, or set {env_var}={running}"
    )
