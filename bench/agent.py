"""Benchmark: ``iReadCardBas`` through the agent (``sscard agent serve``) vs the library directly.

A national-3 card issued with the development keys is served by ``sscard virtual
serve`` through pcscd + vpcd, as a real card in a real reader would be. Its keys
come from a software key store file (the development roots copied into it, opened
with its passphrase through a file descriptor, never argv), for both sides:

1. library direct: ``SocialSecurityCard.open(PcscTransport(reader))`` +
   ``read_basic_info()``, a new connection for each read (as the agent makes);
2. the agent over HTTP: ``POST /api/iReadCardBas`` with an httpx keep-alive client;
   p50 / p99 latency of both and the agent / library ratio;
3. K concurrent callers (threads, one httpx client each) for ``--seconds``: answers
   per second, successful reads per second, and the share of "card in use" answers
   (HTTP 409, national −12).

The agent runs in its own process: ``sscard -r READER agent serve --port 0``.

Usage: ``.venv/bin/python bench/agent.py [--reads 200] [--seconds 3] [--callers 4,16]
[--busy-wait 2] [--json]``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from read import issue
from report import arguments, percentile, report

from sscard.applets.pcsc_rig import reader_lock, running_pcscd, served_card
from sscard.card import SocialSecurityCard
from sscard.keys.dev import DevelopmentKeyStore
from sscard.keys.provider import open_security_module
from sscard.keys.security_module import SecurityModule
from sscard.keys.software_store import SoftwareKeyStore
from sscard.layout import load_profile
from sscard.transport.pcsc import PcscTransport

PROFILE = "national-3"
PASSPHRASE = "bench key store passphrase"
SSCARD = str(Path(sys.executable).with_name("sscard"))


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reads", type=int, default=200, help="reads per latency phase")
    parser.add_argument("--callers", default="4,16", help="concurrent callers, comma-separated")
    parser.add_argument("--busy-wait", type=float, default=2.0, help="the agent's --busy-wait")


def key_store(path: Path) -> Path:
    """A software key store file holding the development roots (the served card's keys)."""
    slots = load_profile(PROFILE).key_scheme.slots
    SoftwareKeyStore.create(path, PASSPHRASE, entries=DevelopmentKeyStore(slots).entries())
    return path


def security(store: Path) -> SecurityModule:
    profile = load_profile(PROFILE)
    return open_security_module(
        str(store),
        slots=profile.key_scheme.slots,
        production=profile.production,
        secret=lambda _label: PASSPHRASE,
    )


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """Milliseconds of each of ``n`` calls."""
    samples = []
    for _n in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


@contextmanager
def running_agent(reader: str, store: Path, wait: float) -> Iterator[tuple[str, str]]:
    """``sscard agent serve`` in its own process on a free port: (base URL, API token)."""
    data = tempfile.mkdtemp(prefix="sscard-bench-agent-")
    env = {**os.environ, "SSCARD_DATA_DIR": data, "SSCARD_LANG": "en"}
    env.pop("SSCARD_KEYSTORE", None)
    token = subprocess.run(
        [SSCARD, "agent", "token"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    read_end, write_end = os.pipe()
    argv = [SSCARD, "-r", reader, "agent", "serve", "--port", "0"]
    argv += ["--keystore", str(store), "--passphrase-fd", str(read_end)]
    argv += ["--service-point", "bench", "--busy-wait", str(wait)]
    os.write(write_end, (PASSPHRASE + "\n").encode())
    os.close(write_end)
    try:
        agent = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, text=True, pass_fds=(read_end,)
        )
    finally:
        os.close(read_end)
    try:
        assert agent.stdout is not None
        line = agent.stdout.readline()
        found = re.search(r"https?://\S+", line)
        if found is None:
            raise RuntimeError(f"the agent did not start: {line!r}")
        yield found.group(0).rstrip("/"), token
    finally:
        agent.terminate()
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()


def concurrent(url: str, token: str, callers: int, seconds: float) -> dict[str, float]:
    """``callers`` threads posting iReadCardBas for ``seconds``: rates and the CardInUse share."""
    counts = {"ok": 0, "in use": 0, "other": 0}
    lock = threading.Lock()
    start = threading.Barrier(callers + 1)
    end = [0.0]

    def caller() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
            start.wait()
            while time.perf_counter() < end[0]:
                answer = client.post("/api/iReadCardBas", json={}, timeout=60)
                kind = "other"
                if answer.status_code == 200 and answer.json()["code"] == 0:
                    kind = "ok"
                elif answer.status_code == 409 and answer.json()["code"] == -12:
                    kind = "in use"
                with lock:
                    counts[kind] += 1

    threads = [threading.Thread(target=caller) for _n in range(callers)]
    for thread in threads:
        thread.start()
    end[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    total = sum(counts.values())
    return {
        "answers/s": round(total / elapsed, 1),
        "reads/s": round(counts["ok"] / elapsed, 1),
        "card in use share": round(counts["in use"] / total, 3) if total else 0.0,
        "other answers": counts["other"],
    }


def main() -> int:
    args = arguments(__doc__, options)
    callers = [int(c) for c in args.callers.split(",") if c.strip()]
    out: dict[str, object] = {"reads per phase": args.reads}
    with tempfile.TemporaryDirectory() as tmp:
        card = Path(tmp) / "card.img"
        issue(card, PROFILE)
        store = key_store(Path(tmp) / "service-point.keys")
        with running_pcscd(), reader_lock() as port, served_card(card, port) as reader:
            keys = security(store)

            def direct() -> str:
                transport = PcscTransport(reader)
                transport.connect()
                try:
                    session = SocialSecurityCard.open(transport, security=keys)
                    return session.read_basic_info().national()
                finally:
                    transport.disconnect()

            line = direct()  # warm up (and the key store's derivations cached)
            library = timed(direct, args.reads)
            with running_agent(reader, store, args.busy_wait) as (url, token):
                headers = {"Authorization": f"Bearer {token}"}
                with httpx.Client(base_url=url, headers=headers) as client:

                    def through_agent() -> None:
                        answer = client.post("/api/iReadCardBas", json={}, timeout=60)
                        answer.raise_for_status()
                        body = answer.json()
                        assert body["code"] == 0, body
                        assert body["data"]["line"] == line, (body["data"]["line"], line)

                    through_agent()
                    agent = timed(through_agent, args.reads)
                for name, samples in (("library direct", library), ("agent over HTTP", agent)):
                    out[f"{name}: p50 ms"] = round(percentile(samples, 50), 2)
                    out[f"{name}: p99 ms"] = round(percentile(samples, 99), 2)
                out["agent / library p50 ratio"] = round(
                    percentile(agent, 50) / percentile(library, 50), 2
                )
                out["agent / library p99 ratio"] = round(
                    percentile(agent, 99) / percentile(library, 99), 2
                )
                out["agent busy wait s"] = args.busy_wait
                for k in callers:
                    for key, value in concurrent(url, token, k, args.seconds).items():
                        out[f"{k} callers: {key}"] = value
    report(out, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
