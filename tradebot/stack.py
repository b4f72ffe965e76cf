"""`make run`: the whole bot in one terminal, kept alive by supervisord.

Migrates, creates the admin user, then hands every process in the Procfile to
supervisord (the `supervisor` package), which restarts any process that dies
unexpectedly and stops them all on Ctrl-C. When REDIS_URL is unset, an embedded Redis
is one of those processes, started first and stopped last; an external one must answer
before anything starts. A process that exits on purpose (exit code 0, such as the feed
after its "stop" command) stays stopped. In paper mode the simulator runs too; in live
mode it is left out. One launcher per var folder. Once the bot is up, the status
summary is printed once.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from tradebot.env import ConfigError

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 150
# A process that dies within this many seconds of starting has failed to start;
# supervisord waits 1 s, 2 s, 3 s ... between tries, so 30 tries keep one that cannot
# start (its dependency down, say) coming back for about eight minutes before FATAL.
START_SECONDS = 5
START_RETRIES = 30
# supervisord starts lower numbers first and stops them last: Redis, then the simulator
# (the broker, in paper mode) and web stay up while the others shut down.
PRIORITY = {"redis": 1, "simulator": 10, "web": 20}
# Restarted whatever its exit code: nothing stops these on purpose.
ALWAYS_RESTART = ("redis",)
REDIS_READY_TIMEOUT = 15


def read_procfile(path: Path) -> dict[str, str]:
    processes = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip().isidentifier() or not command.strip():
            raise ConfigError(f"{path.name} line {number} is not 'name: command': {line!r}")
        processes[name.strip()] = command.strip()
    return processes


def supervisord_config(processes: dict[str, str], run_dir: Path) -> str:
    """One [program] per Procfile line; output goes to supervisord's own stdout."""
    lines = [
        "[supervisord]",
        "nodaemon=true",
        f"logfile={run_dir / 'supervisord.log'}",
        f"pidfile={run_dir / 'supervisord.pid'}",
        f"childlogdir={run_dir}",
        "",
        "[unix_http_server]",
        f"file={run_dir / 'supervisor.sock'}",
        "chmod=0700",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{run_dir / 'supervisor.sock'}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
    ]
    for name, command in processes.items():
        # `exec` so that signals reach the process itself, not the shell around it.
        shell = "exec " + command
        lines += [
            "",
            f"[program:{name}]",
            f"command=/bin/sh -c {shlex.quote(shell).replace('%', '%%')}",
            f"directory={ROOT}",
            f"priority={PRIORITY.get(name, 50)}",
            "autorestart=" + ("true" if name in ALWAYS_RESTART else "unexpected"),
            "exitcodes=0",
            f"startsecs={START_SECONDS}",
            f"startretries={START_RETRIES}",
            "stopsignal=TERM",
            "stopwaitsecs=20",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            "stdout_logfile=/dev/fd/1",
            "stdout_logfile_maxbytes=0",
        ]
    return "\n".join(lines) + "\n"


def _manage(*args: str, env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env)
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed; see the message above")


def _bot_status(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run bot_status with its output in a file: a pipe could be held open by a child."""
    with tempfile.TemporaryFile("w+") as out:
        code = subprocess.run(
            [sys.executable, "manage.py", "bot_status", *args],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.DEVNULL,
        ).returncode
        out.seek(0)
        return code, out.read()


def _ready(status: dict) -> bool:
    """Prices flow and every symbol has its history or is marked warming up."""
    total = status.get("historical_candles_total") or 0
    settled = status.get("historical_candles_loaded", 0) + status.get("symbols_warming_up", 0)
    return bool(status.get("symbols_flowing")) and total > 0 and settled >= total


def _print_status_when_ready(env: dict[str, str], stop: threading.Event) -> None:
    """Wait until the bot is up, then print the bot_status summary once."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not stop.wait(3) and time.monotonic() < deadline:
        code, out = _bot_status(env, "--json")
        try:
            if code == 0 and _ready(json.loads(out)):
                break
        except ValueError:
            continue
    if stop.is_set():
        return
    _code, summary = _bot_status(env)
    web = f"http://{env.get('WEB_HOST', '127.0.0.1')}:{env.get('WEB_PORT', '8000')}/admin/"
    flower = f"http://{env.get('FLOWER_HOST', '127.0.0.1')}:{env.get('FLOWER_PORT', '5555')}/"
    sys.stdout.write(
        f"\n{summary}\n"
        f"  admin                  {web}\n"
        f"  flower                 {flower}\n"
        "  Ctrl-C stops everything.\n\n"
    )
    sys.stdout.flush()


_CHECK = """
import django
django.setup()
from django.conf import settings
if not settings.PAPER:
    from broker.session import require_credentials
    require_credentials(settings.ANGEL_CLIENT_CODE, settings.ANGEL_PIN,
                        settings.ANGEL_API_KEY, settings.ANGEL_TOTP_SECRET)
"""


def _check_settings(env: dict[str, str]) -> None:
    """Load the settings (and in live mode the credentials) once, before any process
    starts, so a bad or missing value stops here with one line naming it."""
    result = subprocess.run(
        [sys.executable, "-c", _CHECK], cwd=ROOT, env=env, capture_output=True, text=True,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["settings could not be loaded"])[-1]
        reason = last.split("Error: ", 1)[-1]
        raise SystemExit(f"tradebot cannot start: {reason}")


def _single_instance(run_dir: Path):
    """Hold a lock for as long as this launcher runs: a second `make run` on the same
    folder would start a second Redis on the same data and confuse every command."""
    handle = open(run_dir / "launcher.lock", "a+")  # noqa: SIM115 (held until exit)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        raise SystemExit(
            f"tradebot is already running from this folder (launcher pid {pid}); "
            "stop it with Ctrl-C in its terminal first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _masked(url: str) -> str:
    """The URL without its user and password."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}{parts.path}"


def _require_free_ports(env: dict[str, str], paper: bool) -> None:
    """Another bot (another folder, same defaults) would share these and each would
    talk to the other's simulator: refuse at once, naming the setting to change."""
    import socket

    wanted = [("WEB_PORT", "8000"), ("FLOWER_PORT", "5555")]
    if paper:
        wanted.append(("SIMULATOR_PORT", "8600"))
    for name, default in wanted:
        port = int(env.get(name) or default)
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise SystemExit(
                    f"tradebot cannot start: port {port} ({name}) is in use, perhaps by "
                    f"another tradebot; stop it or set {name}"
                ) from None


def _require_redis(url: str) -> None:
    """An external Redis must answer before any process starts."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise SystemExit(
            f"tradebot cannot start: Redis at {_masked(url)} does not answer "
            f"({exc.__class__.__name__}: {exc}); check REDIS_URL"
        ) from None
    finally:
        client.close()


def _await_embedded_redis(server, supervisord: subprocess.Popen) -> None:
    """Wait until the Redis that supervisord started answers, and is ours."""
    import redis

    client = redis.Redis.from_url(server.url, socket_connect_timeout=1, socket_timeout=1)
    deadline = time.monotonic() + REDIS_READY_TIMEOUT
    try:
        while time.monotonic() < deadline and supervisord.poll() is None:
            if server.is_ours(client):
                return
            time.sleep(0.05)
    finally:
        client.close()
    raise SystemExit(
        f"tradebot cannot start: the embedded Redis did not come up on port {server.port} "
        f"(taken by another program? set EMBEDDED_REDIS_PORT); see {server.data_dir}"
    )


def _fresh_start_state(env: dict[str, str]) -> None:
    """Forget the last run's health verdict and feed state, and copy the kill switch
    from the database into Redis (its mirror there may come from an old snapshot)."""
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_START], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        print(f"warning: start-up state not reset: {result.stderr.strip()[-300:]}")


_FRESH_START = """
import django
django.setup()
from broker.factory import get_redis
from tradebot import keys, state
get_redis().delete(keys.HEALTH_LAST, keys.FEED_STATE)
state.sync_kill_switch_mirror()
"""


def main() -> int:
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    from manage import load_dotenv_file

    load_dotenv_file()
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "tradebot.settings")
    env["PYTHONUNBUFFERED"] = "1"
    # Processes find each other's tools in this virtualenv.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    var_dir = Path(env.get("TRADEBOT_VAR_DIR", ROOT / "var"))
    run_dir = var_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    paper = env.get("TRADEBOT_MODE", "paper") == "paper"
    _check_settings(env)
    lock = _single_instance(run_dir)
    _require_free_ports(env, paper)
    # Files under var/ (database, Redis snapshot, logs) hold session tokens in live mode.
    os.umask(0o077)

    redis_server = None
    url_file = var_dir / "redis" / "url"
    if env.get("REDIS_URL"):
        _require_redis(env["REDIS_URL"])
    else:
        from tradebot.embedded_redis import EmbeddedRedis, free_port

        port = int(env.get("EMBEDDED_REDIS_PORT", "0")) or free_port()
        redis_server = EmbeddedRedis(var_dir / "redis", port=port, persist=True)
        redis_server.data_dir.mkdir(parents=True, exist_ok=True)
        env["REDIS_URL"] = redis_server.url

    stop = threading.Event()
    supervisord = None
    try:
        _manage("migrate", "--no-input", "-v", "0", env=env)
        _manage("ensure_admin", env=env)
        _manage("collectstatic", "--no-input", "-v", "0", env=env)
        processes = read_procfile(ROOT / "Procfile")
        if not paper:
            processes.pop("simulator", None)
        if redis_server is not None:
            command = redis_server.command(logfile=redis_server.data_dir / "redis.log")
            processes = {"redis": shlex.join(command), **processes}
        config = run_dir / "supervisord.conf"
        config.write_text(supervisord_config(processes, run_dir))
        supervisord = subprocess.Popen(
            [str(Path(sys.executable).parent / "supervisord"), "-c", str(config)],
            cwd=ROOT, env=env,
        )

        def forward(signum, _frame):  # Ctrl-C or SIGTERM: supervisord stops everything
            stop.set()
            if supervisord.poll() is None:
                supervisord.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        if redis_server is not None:
            _await_embedded_redis(redis_server, supervisord)
            url_file.write_text(redis_server.url + "\n")
            print(f"embedded Redis on {redis_server.url} (data in {redis_server.data_dir})")
        _fresh_start_state(env)
        threading.Thread(
            target=_print_status_when_ready, args=(env, stop), daemon=True
        ).start()
        return supervisord.wait()
    finally:
        stop.set()
        if supervisord is not None and supervisord.poll() is None:
            supervisord.send_signal(signal.SIGTERM)
            supervisord.wait(60)
        if redis_server is not None:
            url_file.unlink(missing_ok=True)
        lock.close()

if __name__ == "__main__":
    try:
        sys.exit(main())
    except ConfigError as exc:
        sys.exit(f"tradebot cannot start: {exc}")
    except KeyboardInterrupt:  # Ctrl-C before the processes were started
        sys.exit(130)
