"""Fault tests (issue 8): kill -9 the client mid-push, restart the platform mid-batch.

Real processes, real TLS, real SQLite files: in the end every event is stored
on the platform exactly once and none is lost.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sscard.exchange import outbox
from sscard.exchange.platform import Platform
from tests.exchange_support import CONFIG, Pki, client_env, fill, open_store, pki, platform

__all__ = ["pki", "platform"]  # fixtures


def sscard(*args: str) -> list[str]:
    return [sys.executable, "-m", "sscard", *args]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def platform_ids(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT id FROM platform_events ORDER BY seq")]
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        conn.close()


def test_kill_9_client_between_platform_ack_and_local_commit(
    platform: Platform, pki: Pki, tmp_path: Path
) -> None:
    store = tmp_path / "sp.db"
    ids = fill(open_store(store), 1000)
    original = platform.store.store_batch
    third_stored = threading.Event()
    release = threading.Event()
    calls = []

    def slow_third(department: str, events: Any) -> Any:
        acks = original(department, events)  # committed on the platform
        calls.append(len(acks))
        if len(calls) == 3:
            third_stored.set()
            release.wait(10)  # the ack never reaches the client: it is killed first
        return acks

    platform.store.store_batch = slow_third  # type: ignore[method-assign]
    env = os.environ | client_env(platform.url, pki, "sp-labour", store)
    client = subprocess.Popen(
        sscard("sync", "push", "--batch-size", "100"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert third_stored.wait(30), "the client never pushed a third batch"
        client.send_signal(signal.SIGKILL)
        assert client.wait(10) == -signal.SIGKILL
    finally:
        release.set()
        platform.store.store_batch = original  # type: ignore[method-assign]
    assert len(platform.store.event_ids()) == 300
    assert outbox.stats(open_store(store)).delivered == 200  # the third ack was lost

    again = subprocess.run(
        sscard("--json", "sync", "push", "--batch-size", "100"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["duplicate"], report["stored"]) == (100, 700)
    assert platform.store.event_ids() == ids  # each exactly once, in order, none lost
    assert outbox.stats(open_store(store)).pending == 0


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "platform.json"
    path.write_text(json.dumps(CONFIG))
    return path


class PlatformProcess:
    """``sscard exchange-platform serve`` as a child process."""

    def __init__(self, pki: Pki, config: Path, store: Path) -> None:
        self.pki, self.config, self.store = pki, config, store
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        args = [
            "exchange-platform",
            "serve",
            "--config",
            str(self.config),
            "--tls-dir",
            str(self.pki.dir),
            "--store",
            str(self.store),
            "--port",
            str(self.port),
        ]
        self.proc = subprocess.Popen(
            sscard(*args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("listening on https://127.0.0.1:"), line
        self.port = int(line.rsplit(":", 1)[1])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def platform_process(pki: Pki, config_file: Path, tmp_path: Path) -> Iterator[PlatformProcess]:
    p = PlatformProcess(pki, config_file, tmp_path / "platform.db")
    p.start()
    yield p
    p.stop()


def test_platform_killed_and_restarted_mid_batch_loses_and_repeats_nothing(
    platform_process: PlatformProcess, pki: Pki, tmp_path: Path
) -> None:
    store = tmp_path / "sp.db"
    ids = fill(open_store(store), 8000)
    env = os.environ | client_env(
        f"https://127.0.0.1:{platform_process.port}", pki, "sp-labour", store
    )
    args = ["--json", "sync", "run", "--period", "0.2", "--batch-size", "1000", "--no-pull"]
    client = subprocess.Popen(
        sscard(*args),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for threshold in (1000, 4000):  # twice, while batches keep arriving
            wait_for(
                lambda t=threshold: len(platform_ids(platform_process.store)) >= t,  # type: ignore[misc]
                60,
                f"{threshold} events on the platform",
            )
            platform_process.kill()
            time.sleep(0.3)
            platform_process.start()  # same port, same store
        wait_for(lambda: outbox.stats(open_store(store)).pending == 0, 90, "the outbox to drain")
    finally:
        client.terminate()
        output, _ = client.communicate(timeout=10)
    cycles = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(c["error"] for c in cycles), "the client never saw the platform down"
    stored = platform_ids(platform_process.store)
    assert len(stored) == len(set(stored)) == 8000
    assert sorted(stored) == sorted(ids)
