"""`dynllm-tui serve`: the same app, on the same workspace, in a web browser (textual-serve).

textual-serve runs a small aiohttp server; each browser tab that opens the page gets its own
app process (`python -m dynllm_tui.cli --db WORKSPACE`, Textual's web driver) wired to the page
over a websocket. So the served app is the terminal app, screen for screen; the workspace is
shared as it is between two terminals (SQLite WAL, one training at a time).

It listens on 127.0.0.1 unless told otherwise: the app can start trainings and write exports,
so it is not offered to the network by default.
"""

from __future__ import annotations

import errno
import shlex
import socket
import sys
from pathlib import Path

from storage.errors import DynllmError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def check_port(host: str, port: int) -> None:
    """Raise one clear line if `port` cannot be served on `host`: out of range, already in use,
    not permitted, or a host that is not an address of this machine."""
    if not 1 <= port <= 65535:
        raise DynllmError(f"serve: --port {port} is not a port number (1 to 65535)")
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    # Same option as the server's own socket, so a port in TIME_WAIT is not refused here.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
    except socket.gaierror as exc:
        raise DynllmError(f"serve: --host {host!r} is not an address ({exc.strerror})") from None
    except OSError as exc:
        raise DynllmError(_bind_problem(host, port, exc)) from None
    finally:
        probe.close()


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (f"serve: port {port} on {host} is already in use: choose another with "
                "--port N")
    if exc.errno == errno.EACCES:
        return f"serve: port {port} on {host} needs privileges: choose one above 1023"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"serve: --host {host} is not an address of this machine"
    return f"serve: cannot listen on {host}:{port}: {exc.strerror or exc}"


def app_command(db: str | Path) -> str:
    """The shell command textual-serve runs for each browser tab: this app on `db`, with the
    interpreter running now (the same virtual environment)."""
    return shlex.join([sys.executable, "-m", "dynllm_tui.cli", "--db", str(Path(db).resolve())])


def serve(db: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the app on `db` at http://host:port until Ctrl-C (or SIGTERM). `db` must be an
    existing workspace (checked before anything listens)."""
    from storage.workspace import Workspace

    Workspace.open_for_browsing(db).close()  # a missing or damaged workspace: its own line
    check_port(host, port)
    from textual_serve.server import Server

    server = Server(app_command(db), host=host, port=port, title="dynllm-tui")
    try:
        server.serve()
    except OSError as exc:  # lost the race for the port after the check
        raise DynllmError(_bind_problem(host, port, exc)) from None
