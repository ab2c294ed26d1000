"""A real Milvus standalone server as a local process, from PyPI's embedded ``milvus`` package (2.3.5): the test
double for "a Milvus server" in tests, benchmarks and fault drills (no Docker here). Same server code users run
in Docker or Kubernetes, an older release."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _bind_reusable(port: int) -> socket.socket | None:
    """The package checks each port by binding it without SO_REUSEADDR: right after a kill -9 the old connections'
    TIME_WAIT would make it refuse the very ports the server needs again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("", port))  # every interface, as the server binds: a port another server listens on is refused
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None


class LocalMilvusServer:
    """Start, kill -9 and start again on the same data directory and port (the fault drills need all three)."""

    def __init__(self, base_dir: Path, port: int | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.port = port or free_port()
        self._etcd_ports = (free_port(), free_port())  # kept across restarts: etcd's data remembers them
        self._ports: dict[str, int] = {}
        self._server = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        process = getattr(self._server, "server_proc", None)
        return process.pid if process is not None else None

    def start(self) -> LocalMilvusServer:
        from milvus import MilvusServer

        self.base_dir.mkdir(parents=True, exist_ok=True)
        server = MilvusServer(wait_for_started=False)
        server.set_base_dir(str(self.base_dir))
        self._own_etcd_ports(server)
        server.config.try_bind_port = _bind_reusable
        # The proxy on our port; on a restart every component on its old port (etcd remembers where they were).
        server.config.update(**{"proxy_port": self.port, **self._ports})
        started = time.monotonic()
        server.start()
        self._server = server
        self._ports = {key: server.config.get(key) for key in server.config_keys if key.endswith("_port")}
        try:
            server.wait_started(timeout=START_TIMEOUT_S * 1000)
        except BaseException:
            self.stop()
            raise
        logger.info("Milvus server %s up in %.1fs (data %s)", self.uri, time.monotonic() - started, self.base_dir)
        return self

    def _own_etcd_ports(self, server) -> None:  # type: ignore[no-untyped-def]
        """The package's embedded etcd always takes peer port 2380, so a second server on the machine (a developer's,
        a benchmark's) would stop this one from starting: give it ports of its own through an etcd config file."""
        client, peer = self._etcd_ports
        etcd_config = self.base_dir / "embedEtcd.yaml"
        etcd_config.write_text(
            "name: default\n"
            f"listen-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-cluster: default=http://127.0.0.1:{peer}\n"
            f"listen-client-urls: http://127.0.0.1:{client}\n"
            f"advertise-client-urls: http://127.0.0.1:{client}\n"
        )
        server.config.update(etcd_port=client)
        server.config.template_text = server.config.template_text.replace(
            "\netcd:\n", f"\netcd:\n  config:\n    path: {etcd_config}\n", 1
        )

    def kill(self) -> None:
        """kill -9: no shutdown, as a crash or an OOM kill would leave it."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            self._server.server_proc.wait(timeout=30)  # type: ignore[union-attr]
        self._forget()

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.stop()
        self._forget()

    def _forget(self) -> None:
        if self._server is not None:
            for handle in self._server.proc_fds.values():
                with contextlib.suppress(Exception):
                    handle.close()
            self._server.proc_fds.clear()
            self._server.server_proc = None
        self._server = None


@contextlib.contextmanager
def running_milvus_server(base_dir: Path, port: int | None = None) -> Iterator[LocalMilvusServer]:
    server = LocalMilvusServer(base_dir, port).start()
    try:
        yield server
    finally:
        server.stop()
