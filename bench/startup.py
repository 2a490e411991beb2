"""Benchmark: how long a user waits for ``sscard`` (start-up and one ``read``), as a ratio.

Each command runs ``--runs`` times as a fresh process (after ``--warmup`` runs),
hyperfine-style: mean ± standard deviation, median and minimum wall time; the
ratios compare medians measured in the same run. The commands compared take
turns (one run of each, then the next round), so a load that comes and goes on
the machine weighs on both sides of a ratio alike. The processes may write bytecode
caches (``PYTHONDONTWRITEBYTECODE`` is dropped), as an installed package has them:
the warm-up runs write them, so no run compiles sources.

Every process starts without a terminal (as a service's or a kiosk script's), and
``sscard`` runs in its own process except where a line says "command server": there
``sscard command-server`` runs and the ``sscard`` process hands the command to it
(docs/cli.md, "Command server"): the interpreter starts, Click and sscard do not load.

1. ``python -c "import click"`` (the baseline: an interpreter and the CLI library),
   ``sscard --version`` and ``sscard --help``; target ≤ 2× the baseline. And
   ``sscard --version`` with the command server running.
2. On a national-2 card served through pcscd + vpcd (``sscard virtual serve`` in
   its own process), with an operator of the service role logged in:
   ``sscard -r READER read`` against a small pyscard program (``python -c``) that
   connects to the same reader and sends the same command APDUs (learnt from one
   ``sscard --log-level trace`` run); target ≤ 1.5×. The same program importing
   Click first is printed too: the floor of any Click command line that sends
   those APDUs (an interpreter, Click, pyscard and the card's answers), and that
   program appending one hash-chained record to an SQLite file as well: the floor of
   an audited read (every ``sscard read`` is in the audit trail, regulation art. 13).
   The read is timed in its own process and with the command server running; the
   target (≤ 1.5×) is met with the command server: a process that starts Click and
   sscard cannot meet it (the Click floor alone is about 1.5×).

Usage: ``.venv/bin/python bench/startup.py [--runs 20] [--warmup 2] [--json]``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from report import arguments, report

PYTHON = sys.executable
SSCARD = str(Path(sys.executable).with_name("sscard"))
ROOT = Path(__file__).resolve().parent.parent

PYSCARD_READ = """\
import sys
from smartcard import scard
reader = sys.argv[1]
hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
assert hresult == 0, hresult
hresult, card, protocol = scard.SCardConnect(
    context, reader, scard.SCARD_SHARE_EXCLUSIVE,
    scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
assert hresult == 0, hresult
pci = scard.SCARD_PCI_T1 if protocol == scard.SCARD_PROTOCOL_T1 else scard.SCARD_PCI_T0
for apdu in sys.argv[2:]:
    hresult, response = scard.SCardTransmit(card, pci, list(bytes.fromhex(apdu)))
    assert hresult == 0, hresult
    print(bytes(response).hex())
scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
scard.SCardReleaseContext(context)
"""
"""The baseline for ``sscard read``: connect, send the APDUs given as arguments, print."""

AUDITED = """\
import hashlib, json, sqlite3, sys, time
conn = sqlite3.connect(sys.argv.pop(1), isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=FULL")
conn.execute("CREATE TABLE IF NOT EXISTS trail (seq INTEGER PRIMARY KEY, body TEXT, hash TEXT)")
conn.execute("BEGIN IMMEDIATE")
last = conn.execute("SELECT hash FROM trail ORDER BY seq DESC LIMIT 1").fetchone()
body = json.dumps({"action": "card.read", "operator": "bench", "time": time.time()})
digest = hashlib.sha256(((last[0] if last else "") + body).encode()).hexdigest()
conn.execute("INSERT INTO trail (body, hash) VALUES (?, ?)", (body, digest))
conn.execute("COMMIT")
"""
"""What any audited read adds at the least: one hash-chained record appended to an SQLite
file in one durable transaction (sscard's own trail does more: an operator check, the
migration versions, the record's fields)."""

TRACED = re.compile(r"TRACE sscard\.apdu: > ([0-9A-F]+)\s*$")


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=20, help="timed runs per command")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--no-card", action="store_true", help="skip the pcscd part")


def timed(
    commands: Sequence[Sequence[str]],
    runs: int,
    warmup: int,
    env: Mapping[str, str] | None = None,
    envs: Mapping[int, Mapping[str, str]] | None = None,
) -> list[list[float]]:
    """Wall times of ``runs`` runs of each of ``commands`` (each run must succeed), taking
    turns: round ``i`` runs every command once. ``envs`` gives some commands (by index)
    an environment of their own. Every process starts without a terminal, as a
    service's or a kiosk script's would."""
    times: list[list[float]] = [[] for _ in commands]
    for i in range(warmup + runs):
        for n, (argv, kept) in enumerate(zip(commands, times, strict=True)):
            start = time.perf_counter()
            done = subprocess.run(
                argv,
                env=(envs or {}).get(n, env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                check=False,
                start_new_session=True,
            )
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"{argv[:4]} failed: {done.stderr.decode(errors='replace')}")
            if i >= warmup:
                kept.append(elapsed)
    return times


def summary(times: Sequence[float]) -> str:
    """``mean ± sd ms (median, min)``, hyperfine's way."""
    sd = statistics.stdev(times) if len(times) > 1 else 0.0
    return (
        f"{statistics.mean(times) * 1000:.1f} ± {sd * 1000:.1f} ms "
        f"(median {statistics.median(times) * 1000:.1f}, min {min(times) * 1000:.1f})"
    )


def ratio(times: Sequence[float], baseline: Sequence[float]) -> float:
    return round(statistics.median(times) / statistics.median(baseline), 2)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of the timed processes: English, bytecode caches allowed, each
    ``sscard`` in its own process (see :func:`command_server`)."""
    env = {**os.environ, "SSCARD_LANG": "en", "SSCARD_COMMAND_SERVER": "off", **extra}
    for name in ("PYTHONDONTWRITEBYTECODE", "SSCARD_KEYSTORE", "SSCARD_READER", "SSCARD_STORE"):
        env.pop(name, None)
    return env


@contextmanager
def command_server(env: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """``sscard command-server`` running for the block: the environment whose ``sscard``
    runs it handles (docs/cli.md, "Command server")."""
    with tempfile.TemporaryDirectory(prefix="sscard-cs-") as tmp:
        served = {**env, "SSCARD_COMMAND_SERVER": os.path.join(tmp, "cs.sock")}
        quiet = {"stdout": subprocess.DEVNULL}
        subprocess.run([SSCARD, "command-server", "start"], env=served, check=True, **quiet)
        try:
            yield served
        finally:
            subprocess.run([SSCARD, "command-server", "stop"], env=served, check=False, **quiet)


def start_up(args: argparse.Namespace, out: dict[str, object]) -> None:
    env = child_env()
    with command_server(env) as served:
        base, version, helped, version_served = timed(
            [
                [PYTHON, "-c", "import click"],
                [SSCARD, "--version"],
                [SSCARD, "--help"],
                [SSCARD, "--version"],
            ],
            args.runs,
            args.warmup,
            env,
            envs={3: served},
        )
    out['python -c "import click"'] = summary(base)
    out["sscard --version"] = summary(version)
    out["sscard --help"] = summary(helped)
    out["sscard --version, command server running"] = summary(version_served)
    out["sscard --version / import click (median; target <= 2)"] = ratio(version, base)
    out["sscard --help / import click (median; target <= 2)"] = ratio(helped, base)
    out["sscard --version, command server / import click (median)"] = ratio(version_served, base)


def logged_in_env(root: Path) -> dict[str, str]:
    """A fresh installation under ``root`` with an operator of the service role logged in."""
    env = child_env(
        SSCARD_DATA_DIR=str(root / "data"), SSCARD_OPERATOR_TOKEN=str(root / "operator.token")
    )
    program = (
        "from sscard.auth import OperatorStore, login\n"
        "store = OperatorStore.open()\n"
        "store.add('bench-issuer', 'bench issuer', 'issuer', 'bench password 1',"
        " bootstrap=True, cost=10)\n"
        "store.add('bench', 'bench clerk', 'service', 'bench password 1', cost=10)\n"
        "login(store, 'bench', 'bench password 1')\n"
        "store.close()\n"
    )
    subprocess.run([PYTHON, "-c", program], env=env, check=True)
    return env


def card_read(args: argparse.Namespace, out: dict[str, object]) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from read import issue

    from sscard.applets.pcsc_rig import reader_lock, running_pcscd, served_card

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "card.img"
        issue(path, "national-2")
        env = logged_in_env(Path(tmp))
        with (
            running_pcscd(),
            reader_lock() as port,
            served_card(path, port) as reader,
            command_server(env) as served,
        ):
            traced = subprocess.run(
                [SSCARD, "--log-level", "trace", "-r", reader, "read"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            apdus = [
                m.group(1) for line in traced.stderr.splitlines() if (m := TRACED.search(line))
            ]
            out["sscard read: command APDUs"] = len(apdus)
            trail = str(Path(tmp) / "trail.db")
            raw, floor, audited, sscard, sscard_served = timed(
                [
                    [PYTHON, "-c", PYSCARD_READ, reader, *apdus],
                    [PYTHON, "-c", "import click\n" + PYSCARD_READ, reader, *apdus],
                    [
                        PYTHON,
                        "-c",
                        "import click\n" + AUDITED + PYSCARD_READ,
                        trail,
                        reader,
                        *apdus,
                    ],
                    [SSCARD, "-r", reader, "read"],
                    [SSCARD, "-r", reader, "read"],
                ],
                args.runs,
                args.warmup,
                env,
                envs={4: served},
            )
    out["pyscard script, same APDUs"] = summary(raw)
    out["the same script importing click too (floor of a Click CLI)"] = summary(floor)
    out["... and appending one hash-chained record (floor of an audited Click CLI)"] = summary(
        audited
    )
    out["sscard -r READER read"] = summary(sscard)
    out["sscard -r READER read, command server running"] = summary(sscard_served)
    out["Click floor / pyscard script (median)"] = ratio(floor, raw)
    out["audited Click floor / pyscard script (median)"] = ratio(audited, raw)
    out["sscard read / audited Click floor (median)"] = ratio(sscard, audited)
    out["sscard read / pyscard script (median)"] = ratio(sscard, raw)
    out["sscard read, command server / pyscard script (median; target <= 1.5)"] = ratio(
        sscard_served, raw
    )


def main() -> int:
    args = arguments(__doc__, options)
    out: dict[str, object] = {}
    start_up(args, out)
    if not args.no_card:
        card_read(args, out)
    report(out, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
