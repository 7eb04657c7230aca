"""The two ways syncd's metrics leave the process: a node_exporter textfile and `/metrics`.

- `[metrics] textfile`: at start-up, every 15 s and after every run the exposition is
  written to a temporary file in the same directory, flushed, given its mode
  (`textfile_mode`, 0644 by default so node_exporter, running as another user, can
  read it) and renamed over the file: the textfile collector never reads half a file.
  The temporary name starts with `.` and does not end in `.prom`, so the collector
  skips it.
- `[metrics] listen`: a small HTTP server on its own thread answering `GET /metrics`
  (prometheus_client's WSGI app: text or OpenMetrics by `Accept`, gzip by
  `Accept-Encoding`); loopback unless `allow_non_loopback` says otherwise.

Both expose the same registry: the in-process metrics of `syncd.metrics` and the state
DB's (`syncd.metrics.state`), read at that moment. Labels hold job, connector,
destination, source, kind and stream names only: never a secret, an id or a URL.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import structlog
from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from syncd import __version__
from syncd.config import Settings, split_listen
from syncd.logs import Logger
from syncd.metrics import REGISTRY
from syncd.metrics.state import StateCollector

log: Logger = structlog.get_logger("syncd.metrics")


class _InProcess(Collector):
    """The module-level registry of `syncd.metrics`, as one collector of another registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()

    def describe(self) -> Iterable[Metric]:
        return []


class _BuildInfo(Collector):
    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "syncd_build_info", "Always 1; the running syncd's version.", labels=["version"]
        )
        info.add_metric([__version__], 1.0)
        yield info

    def describe(self) -> Iterable[Metric]:
        return []


def build_registry(db_path: Callable[[], Path]) -> CollectorRegistry:
    """Everything syncd exposes: build info, process metrics, the in-process counters and
    the state DB's gauges (read from `db_path()` at each collection)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_BuildInfo())
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(_InProcess())
    registry.register(StateCollector(db_path))
    return registry


def write_textfile(path: Path, registry: CollectorRegistry, mode: int) -> None:
    """Write the exposition atomically: temp file in the same directory, fsync, chmod,
    rename. Raises OSError when the directory cannot be written."""
    data = generate_latest(registry)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), mode)  # not the process umask: node_exporter must read it
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: the daemon's output is its structured log."""

    def log_message(self, format: str, *args: Any) -> None:
        return


def _serve(registry: CollectorRegistry) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"syncd metrics: GET /metrics\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: syncd serves /metrics\n"]

    return app


class MetricsServer:
    """`GET /metrics` on `host:port`, served from a thread of its own."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingWSGIServer):
            address_family = family

        self.server = make_server(
            host, port, _serve(registry), server_class=Server, handler_class=_QuietHandler
        )
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="syncd-metrics", daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Exposure:
    """The metrics of one syncd process, for its current settings (re-read on reload)."""

    def __init__(self, settings: Callable[[], Settings]) -> None:
        self._settings = settings
        self.registry = build_registry(lambda: self._settings().db_path)
        self.server: MetricsServer | None = None
        self._write_lock = threading.Lock()
        self._failing = False

    def start_server(self) -> None:
        """Start `/metrics` if `metrics.listen` is set; OSError (port taken) propagates."""
        listen = self._settings().metrics.listen
        if listen and self.server is None:
            host, port = split_listen(listen)
            self.server = MetricsServer(host, port, self.registry)
            log.info("metrics_listening", address=listen, port=self.server.port)

    def write_textfile(self) -> None:
        """Write `metrics.textfile` if set. Never raises: a failure is logged once, and its
        end too, and the runs go on."""
        config = self._settings().metrics
        if config.textfile is None:
            return
        with self._write_lock:
            try:
                write_textfile(config.textfile, self.registry, config.textfile_mode)
            except OSError as exc:
                if not self._failing:
                    log.error("metrics_textfile_failed", path=str(config.textfile), error=str(exc))
                self._failing = True
                return
            if self._failing:
                log.info("metrics_textfile_written_again", path=str(config.textfile))
            self._failing = False

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
