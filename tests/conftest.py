"""Shared fixtures: the real datasets in ../shared/data (beside the checkout), and a per-test cnnlab cache dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CNNLAB_SHARED_DATA", REPO.parent / "shared" / "data"))

# Two cores here: tests run with one intra-op thread so parallel pytest workers do not fight over cores.
torch.set_num_threads(1)
# train.amp=auto decides from a timing; tests that compare numbers (exact resume, divergence at lr 1, gradient
# accumulation) must not depend on one, so the suite pins auto to fp32 (the amp tests call the timing directly).
os.environ.setdefault("CNNLAB_AMP_AUTO", "none")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "cifar10-jpeg.tar.gz").exists():
        pytest.skip(f"shared datasets not found at {SHARED_DATA} (set CNNLAB_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One decode cache for the whole test session, so the 60,000 JPEGs are decoded at most once per run."""
    env = os.environ.get("CNNLAB_TEST_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("cnnlab-cache")


@pytest.fixture
def config_on_data(shared_data, session_cache, monkeypatch, tmp_path):
    """make(*overrides): a run config over the shared data, its run folder `t` under tmp_path/runs (a later
    `name=...` override wins), decoding into the session's cache."""
    from cnnlab.training.config import load_config

    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))

    def make(*overrides):
        return load_config(None, [f"data.root={shared_data}", f"out={tmp_path / 'runs'}", "name=t", *overrides])
    return make


# -- the count of hostile inputs that the fuzz tests generated (README, reliability table) -------------------------
# Each test that feeds cnnlab a bad input calls `count_bad_input()`; the total is printed at the end of the run,
# summed over pytest-xdist workers (each worker reports its count through `workeroutput`).
BAD_INPUTS = {"count": 0}


def count_bad_input(n: int = 1) -> None:
    BAD_INPUTS["count"] += n


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["bad_inputs"] = BAD_INPUTS["count"]


def pytest_testnodedown(node, error):
    BAD_INPUTS["count"] += node.workeroutput.get("bad_inputs", 0)


def pytest_terminal_summary(terminalreporter):
    if BAD_INPUTS["count"]:
        terminalreporter.write_line(f"hostile inputs: {BAD_INPUTS['count']} generated, each answered by one "
                                    "'cnnlab: error:' line or handled as documented, no traceback")


@pytest.fixture(scope="session")
def bad_input():
    """Call it once per hostile input a test feeds to cnnlab."""
    return count_bad_input


@pytest.fixture(scope="session")
def fashion_run(shared_data, tmp_path_factory):
    """Train a tiny Fashion-MNIST run (SimpleNN+BN) through `cnnlab train`; `make(*key=value)` returns its folder."""
    def make(*overrides: str) -> Path:
        from cnnlab.cli.main import main

        out = tmp_path_factory.mktemp("runs")
        assert main(["train", "--data-root", str(shared_data), f"out={out}", "name=r", "data.name=fashion-mnist",
                     "train.progress=off", "model.options.batch_norm=true", *overrides]) == 0
        return out / "r"
    return make


# -- a real PostgreSQL server for the results-store tests -----------------------------------------------------------
def _pg_bin(name: str):
    import glob
    import shutil

    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    return found


@pytest.fixture(scope="session")
def postgres_url():
    """postgresql+psycopg:// URL of a throw-away PostgreSQL server started for this test session (initdb into a
    temporary folder, trust authentication on 127.0.0.1, a free port), stopped at the end. CNNLAB_TEST_PG_URL points
    the tests at an existing server instead. Skips, saying why, where PostgreSQL or psycopg is not installed."""
    import shutil
    import socket
    import subprocess

    if os.environ.get("CNNLAB_TEST_PG_URL"):
        return os.environ["CNNLAB_TEST_PG_URL"]
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'psycopg[binary]')")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    import tempfile

    # not under pytest's tmp folder: that is private to this user (0700), and the server may run as another one
    folder = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))
    data = folder / "data"
    run_as = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user where there is one
        runuser = shutil.which("runuser")
        try:
            import pwd
            pwd.getpwnam("postgres")
        except KeyError:
            runuser = None
        if not runuser:
            pytest.skip("running as root without a 'postgres' user and runuser: PostgreSQL cannot be started")
        shutil.chown(folder, "postgres")
        run_as = [runuser, "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        subprocess.run([*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "cnnlab", "--no-sync"], check=True,
                       capture_output=True, timeout=120)
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60", "-o",
                        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        detail = (getattr(e, "stderr", b"") or b"").decode(errors="replace").strip().splitlines()
        pytest.skip(f"PostgreSQL could not be started: {detail[-1] if detail else e}")
    yield f"postgresql+psycopg://cnnlab@127.0.0.1:{port}/postgres"
    subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "fast", "stop"], capture_output=True, timeout=60)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def data(shared_data, monkeypatch, tmp_path):
    """The shared data as CNNLAB_DATA and a per-test decode cache, for tests that run the CLI without --data-root."""
    monkeypatch.setenv("CNNLAB_DATA", str(shared_data))
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    return shared_data
