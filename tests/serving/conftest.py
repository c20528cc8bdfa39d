"""A real BentoML server for the serving tests: started on a free 127.0.0.1 port, torn down with its workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import ROOT

# Small limits so the tests (and the fuzzer) reach them with small bodies.
LIMITS = {"BILSTM_MAX_TEXTS": "8", "BILSTM_MAX_CHARS": "200", "BILSTM_TRANSLATE_BEAM_SIZE": "2"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A running server: its URL, process, log file and every /readyz status seen while it started."""

    url: str
    process: subprocess.Popen
    log: Path
    readyz_seen: list[int] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_server(argv: list[str], env: dict[str, str], log: Path, timeout: float = 240) -> Server:
    """Start ``argv`` (a `bilstm serve` or `bentoml serve` command) in its own session; wait for /readyz."""
    port = free_port()
    argv = [part.replace("{port}", str(port)) for part in argv]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "BENTOML_DO_NOT_TRACK": "True",
                "HF_HUB_OFFLINE": "1", **env}
    process = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{server.log_text()[-3000:]}")
        try:
            status = httpx.get(f"{server.url}/readyz", timeout=5).status_code
        except httpx.HTTPError:
            status = 0  # not listening yet
        server.readyz_seen.append(status)
        if status == 200:
            server.pids = {process.pid, *(child.pid for child in psutil.Process(process.pid).children(recursive=True))}
            return server
        time.sleep(0.2)
    stop_server(server)
    raise AssertionError(f"server not ready after {timeout} s:\n{server.log_text()[-3000:]}")


def stop_server(server: Server) -> None:
    """SIGTERM the whole process group (arbiter and workers); SIGKILL whatever is left after 30 s."""
    try:
        os.killpg(server.process.pid, signal.SIGTERM)
        server.process.wait(30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
    for pid in server.pids:  # workers are in the same session; make sure none outlives the test
        try:
            psutil.Process(pid).wait(10)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)


def bilstm_serve(*args: str) -> list[str]:
    return [sys.executable, "-m", "toolkit.cli", "serve", *args, "--port", "{port}"]


@pytest.fixture(scope="session")
def bentoml_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bentoml_home")


@pytest.fixture(scope="session")
def server(textcat_model_dir: Path, ner_model_dir: Path, translate_model_dir: Path, lm_model_dir: Path,
           bentoml_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`bilstm serve` over the four tiny models (one server for all the HTTP tests)."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    running = start_server(bilstm_serve(str(textcat_model_dir), str(ner_model_dir), str(translate_model_dir),
                                        str(lm_model_dir)),
                           {**LIMITS, "BENTOML_HOME": str(bentoml_home)}, log)
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as session:
        yield session
