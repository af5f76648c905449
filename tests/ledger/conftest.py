"""A real PostgreSQL server for the ledger tests (Debian's postgresql; `make test` installs it when it can)."""

import glob
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """postgresql+psycopg://... of a throwaway cluster on 127.0.0.1, stopped after the session."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[dev]')")
    if not bins:
        pytest.skip("Debian's postgresql is not installed (make postgres)")
    bindir = Path(bins[-1]).parent
    import tempfile

    # Not under pytest's tmp folders: those are private to this user, and the server runs as `postgres` under root.
    root = Path(tempfile.mkdtemp(prefix="unlearn-fl-pg-"))
    data, port = root / "data", _free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user
        shutil.chown(root, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run(run_as + [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True)
    subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                             f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
