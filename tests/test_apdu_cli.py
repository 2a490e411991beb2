"""``sscard apdu`` is no back door: issuer only, every session audited (headers, never data)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sscard.cli.exit_codes import ExitCode
from tests.conftest import PluggedCard
from tests.operatorkit import Installation, audit_records

SSCARD = str(Path(sys.executable).with_name("sscard"))
PLANTED_PIN = "731946"  # sent in a VERIFY: must reach the card and nothing else


def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SSCARD_READER"}
    return subprocess.run(
        [SSCARD, *args], capture_output=True, text=True, input=input, env=env, timeout=60
    )


def test_apdu_without_login_is_refused_and_audited(
    installation: Installation, scripted_card: PluggedCard
) -> None:
    installation.add("admin", "issuer")  # an installation exists; nobody is logged in
    r = run("-r", scripted_card.reader, "apdu", "--stdin", input=f"0020000003{PLANTED_PIN}\n")
    assert r.returncode == ExitCode.AUTH, r.stderr
    assert "sscard operator login" in r.stderr
    assert scripted_card.card.received == []  # nothing reached the card
    assert [(x.operator, x.outcome, x.error) for x in audit_records("card.apdu")] == [
        (None, "refused", "NotLoggedIn")
    ]


def test_apdu_is_refused_to_a_service_operator(
    installation: Installation, scripted_card: PluggedCard
) -> None:
    installation.add("admin", "issuer")
    installation.login("zhang", "service")
    r = run("--json", "-r", scripted_card.reader, "apdu", "80EE00000101")
    assert r.returncode == ExitCode.AUTH
    err = json.loads(r.stderr)
    assert err["error"] == "NotAuthorized" and "card.apdu" in err["message"]
    assert scripted_card.card.received == []
    assert [(x.operator, x.role, x.outcome, x.error) for x in audit_records("card.apdu")] == [
        ("zhang", "service", "refused", "NotAuthorized")
    ]


def test_apdu_by_an_issuer_audits_headers_never_data(
    installation: Installation, scripted_card: PluggedCard
) -> None:
    installation.login("admin", "issuer")
    session = f"00A4040007A0000000031010\n0020000003{PLANTED_PIN}\n80EE00000101\n0084000008\n"
    r = run("-r", scripted_card.reader, "apdu", "--stdin", input=session)
    assert r.returncode == 0, r.stderr
    assert bytes.fromhex(f"0020000003{PLANTED_PIN}") in scripted_card.card.received
    (rec,) = audit_records("card.apdu")
    assert (rec.operator, rec.role, rec.outcome) == ("admin", "issuer", "ok")
    detail = json.loads(rec.detail or "{}")
    assert set(detail) == {"apdus", "count"} and detail["count"] == 4
    headers = detail["apdus"]
    assert headers.startswith("00A40400 Lc=7 SW=9000; 00200000 Lc=3 SW=")
    assert "; 80EE0000 Lc=1 SW=9000; 00840000 Le=8 SW=" in headers
    # no data byte anywhere: not in the record, not in the store, not in audit output
    assert "A0000000031010" not in headers and "0101" not in headers
    for f in installation.data_dir.iterdir():
        if f.is_file():
            raw = f.read_bytes()
            assert PLANTED_PIN.encode() not in raw, f
            assert bytes.fromhex(PLANTED_PIN) not in raw, f
    installation.login("aud-1", "auditor")
    shown = run("--json", "audit", "show", "--action", "card.apdu")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)[0]["detail"]["apdus"] == headers
    assert PLANTED_PIN not in shown.stdout + shown.stderr


def test_apdu_session_that_fails_is_audited_with_what_was_sent(
    installation: Installation, scripted_card: PluggedCard
) -> None:
    installation.login("admin", "issuer")
    r = run("-r", scripted_card.reader, "apdu", "--expect-sw", "9000", "00A40000023F00", "80EE0000")
    assert r.returncode == ExitCode.FAILED
    (rec,) = audit_records("card.apdu")
    assert rec.outcome == "failed"
    detail = json.loads(rec.detail or "{}")
    assert detail == {"apdus": "00A40000 Lc=2 SW=6A82", "count": 1}
