"""The real deployment: MLflow server + SuperLink + 3 SuperNodes on loopback, `flwr run` of the app.

No mocks: the deploy/ scripts start real processes on free 127.0.0.1 ports in a tmp dir, the app is
submitted with `flwr run` (through deploy/run.sh), and the MLflow Model Registry is read back over
HTTP with MlflowClient. Every process group is killed in a finalizer, also when the test fails.

Skipped only when the Flower binaries (flower-superlink, flower-supernode, flwr) are missing; the
TLS test is also skipped without openssl.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
VENV_BIN = Path(sys.executable).parent
FLOWER_BINARIES = ("flower-superlink", "flower-supernode", "flwr")
RUN_TIMEOUT_S = 1200  # the bound on the federated run: a hang fails here, a slow machine does not
# (every message costs the SuperNode a fresh `flwr-clientapp` process and up to two 3 s polls, Flower's own;
# a CI runner under load took over 6 minutes for the run below, which takes under 3 alone on 2 cores)

pytestmark = pytest.mark.slow


def _which(name: str) -> str | None:
    cand = VENV_BIN / name
    if cand.exists() and os.access(cand, os.X_OK):
        return str(cand)
    return shutil.which(name)


def _require_flower() -> None:
    missing = [b for b in FLOWER_BINARIES if _which(b) is None]
    if missing:
        pytest.skip(f"Flower deployment binaries not installed ({', '.join(missing)} not in {VENV_BIN} or on PATH)")


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


class Deployment:
    """The deploy/ scripts bound to one state dir and one set of ports; kills what it started."""

    def __init__(self, state: Path, num_supernodes: int, tls_dir: Path | None = None, with_mlflow: bool = True,
                 site_data_dir: Path | None = None):
        ports = _free_ports(2 + num_supernodes)
        self.state = state
        self.mlflow_port, self.superlink_port, *self.supernode_ports = ports
        self.num_supernodes = num_supernodes
        self.with_mlflow = with_mlflow
        self.env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "VENV": str(VENV_BIN.parent),
            "DEPLOY_STATE_DIR": str(state),
            "MLFLOW_PORT": str(self.mlflow_port),
            "SUPERLINK_PORT": str(self.superlink_port),
            "SUPERNODE_PORTS": " ".join(map(str, self.supernode_ports)),
            "NUM_SUPERNODES": str(num_supernodes),
            "TLS_DIR": str(tls_dir) if tls_dir else "",
            "FLWR_HOME": str(state / "flwr-home"),
            "SITE_DATA_DIR": str(site_data_dir or ""),
        }
        self._pgids: set[int] = set()

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    def script(self, name: str, *args: str, timeout: float, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        env = {**self.env, **(extra_env or {})}
        try:
            p = subprocess.run(["bash", str(DEPLOY / name), *args], env=env, cwd=self.state, capture_output=True,
                               text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"deploy/{name} {' '.join(args)} timed out after {timeout}s\n{e.stdout}\n{e.stderr}") from None
        finally:
            self._remember_pgids()
        return p

    def check(self, name: str, *args: str, timeout: float, extra_env: dict | None = None) -> str:
        p = self.script(name, *args, timeout=timeout, extra_env=extra_env)
        assert p.returncode == 0, f"deploy/{name} {' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}\n{self.logs_tail()}"
        return p.stdout

    def _remember_pgids(self) -> None:
        for f in (self.state / "pids").glob("*.pid"):
            try:
                self._pgids.add(int(f.read_text().strip()))
            except ValueError:
                pass

    def start(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        if self.with_mlflow:
            self.check("mlflow-server.sh", "start", timeout=240)
        self.check("local-federation.sh", "start", timeout=240)

    def stop(self) -> None:
        """Scripts' stop first; then SIGKILL every process group they ever recorded (belt and braces)."""
        self._remember_pgids()
        for name in ("local-federation.sh", "mlflow-server.sh"):
            try:
                subprocess.run(["bash", str(DEPLOY / name), "stop"], env=self.env, cwd=self.state,
                               capture_output=True, timeout=60)
            except Exception:  # noqa: BLE001 - the kill below still runs
                pass
        for pgid in self._pgids:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def logs_tail(self, lines: int = 25) -> str:
        out = []
        for f in sorted((self.state / "logs").glob("*.log")):
            text = f.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"---- {f.name} ----\n" + "\n".join(text))
        return "\n".join(out)


@pytest.fixture(scope="module")
def site_deployment(tmp_path_factory, request):
    """3 SuperNodes, each given a different CSV of its own (node config data-path) and an erasure store."""
    _require_flower()
    from site_files import write_sites

    root = tmp_path_factory.mktemp("deploy-sites")
    sites = root / "sites"
    files = write_sites(sites, sizes=(120, 160, 140), seed=3)
    dep = Deployment(root / "state", num_supernodes=3, site_data_dir=sites)
    request.addfinalizer(dep.stop)
    dep.start()
    return dep, files


@pytest.mark.timeout(RUN_TIMEOUT_S + 300)
def test_withdrawals_on_sites_with_their_own_files(site_deployment):
    """`flwr run` on a real SuperLink and 3 SuperNodes, each with its own CSV; the server holds no client data.
    Site 2 erases named records (queued at the site): exactly those rows are forgotten, no id reaches the
    server side, and MLflow (over HTTP) holds the version chain. (Whole-site withdrawals on the deployment
    engine run the same code; they are tested in simulation, where a round costs seconds, not minutes.)"""
    import hashlib

    from mlflow import MlflowClient

    from unlearn_fl.data import digest_rows
    from unlearn_fl.sites import load_site, resolve_records

    dep, files = site_deployment
    site_opts = dict(target="label", classes="benign,malignant")
    ids = [str(x) for x in load_site(files[2], **site_opts).train_ids[5:12]]
    ids_file, queue, out = dep.state / "erase.txt", dep.state / "requests", dep.state / "sites-out"
    ids_file.write_text("\n".join(ids) + "\n")
    p = subprocess.run([sys.executable, "-m", "unlearn_fl.cli", "withdraw", "--client", "2", "--records", str(ids_file),
                        "--erasure-dir", str(files[2].parent / "site-2-erasures"), "--data-path", str(files[2]),
                        "--target", "label", "--classes", "benign,malignant", "--requests-dir", str(queue)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    run = dep.script("run.sh", f"rounds=1 local-epochs=3 lr=0.01 site-data=true target='label' classes='benign,malignant' "
                               f"withdraw='' requests-dir='{queue}' unlearn-rounds=1 reference=false "
                               f"model-name='deploy-sites' out='{out}'",
                     timeout=RUN_TIMEOUT_S + 90, extra_env={"RUN_TIMEOUT": str(RUN_TIMEOUT_S), "POLL_SECONDS": "3"})
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{dep.logs_tail()}"
    assert "finished:completed" in run.stdout

    report = json.loads((out / "forgetting_report.json").read_text())
    assert report["request"]["scope"] == "records" and report["request"]["n_forget"] == len(ids) == 7
    assert report["dataset"]["dataset"].startswith("per-site data")  # evaluated on the sites' holdouts
    client = MlflowClient(tracking_uri=dep.tracking_uri, registry_uri=dep.tracking_uri)
    v = {str(x.version): x.tags for x in client.search_model_versions("name='deploy-sites'")}
    assert sorted(v) == ["1", "2"] and [v[k]["unlearn_fl.kind"] for k in "12"] == ["trained", "unlearned"]
    assert v["1"]["unlearn_fl.clients"] == "0,1,2"  # the three SuperNodes, by partition-id
    assert v["1"]["unlearn_fl.contains_withdrawn"] == "true" and v["1"]["unlearn_fl.superseded_by"] == "2"
    assert v["2"]["unlearn_fl.parent_version"] == "1" and v["2"]["unlearn_fl.scope"] == "records"
    assert v["2"]["unlearn_fl.clients"] == "0,1,2" and v["2"]["unlearn_fl.n_forget"] == "7"

    # Exactly the named rows: the site's digest of its forget set, reproduced from its file.
    site = load_site(files[2], **site_opts)
    named = site.train.subset(resolve_records(site, ids))
    assert v["2"]["unlearn_fl.forget_digest"] == hashlib.sha256(digest_rows(named).encode()).hexdigest()

    # No record id on the server side: report, tags, the SuperLink's and the run's logs, the request queue.
    server_side = [json.dumps(report), json.dumps(v),
                   *(f.read_text(errors="replace") for f in (dep.state / "logs").glob("*.log") if "supernode" not in f.name),
                   *(f.read_text() for f in queue.rglob("*.json"))]
    for rid in ids:
        assert not any(rid in text for text in server_side), f"record id {rid} reached the server side"


def _make_certs(dest: Path) -> None:
    p = subprocess.run(["bash", str(DEPLOY / "make-certs.sh"), str(dest)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "DEPLOY_STATE_DIR": str(dest.parent / "certs-state")})
    assert p.returncode == 0, p.stdout + p.stderr


def _tls_handshake(port: int, cafile: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname="127.0.0.1"):
            pass


def test_tls_superlink_accepts_supernode_and_cli(tmp_path, request):
    """SuperLink with a self-signed CA; a SuperNode joins over TLS and `flwr` sees it online."""
    _require_flower()
    if shutil.which("openssl") is None:
        pytest.skip("openssl not on PATH: cannot generate the test certificates")
    certs, other = tmp_path / "certs", tmp_path / "other-ca"
    _make_certs(certs)
    _make_certs(other)

    dep = Deployment(tmp_path / "state", num_supernodes=1, tls_dir=certs, with_mlflow=False)
    request.addfinalizer(dep.stop)
    dep.start()  # returns only once `flwr supernode ls` (over TLS, CA-verified) lists the SuperNode online

    cfg = (dep.state / "flwr-home" / "config.toml").read_text()
    assert "insecure" not in cfg and str(certs / "ca.crt") in cfg
    status = dep.check("local-federation.sh", "status", timeout=60)
    assert "online SuperNodes seen by the SuperLink: 1" in status

    _tls_handshake(dep.superlink_port, certs / "ca.crt")  # trusted CA: handshake succeeds
    with pytest.raises(ssl.SSLCertVerificationError):  # another CA: the server certificate is rejected
        _tls_handshake(dep.superlink_port, other / "ca.crt")
