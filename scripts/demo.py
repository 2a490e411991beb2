"""`make demo`: issue a social security card on an emulated card and read it back.

Everything runs in a scratch installation (``.demo/``): an operator, the local
store, a key store made by a key ceremony, the emulated card. No development key
is used: the blank card's transport key and every card key derive from the
demo's own roots.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from sscard.i18n import _, language

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
SSCARD = str(Path(sys.executable).with_name("sscard"))
CARD = DEMO / "card.img"
PSAM = DEMO / "psam.img"
HOLDER = ROOT / "examples" / "holder.json"


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def sscard(
    *args: str, stdin: str | None = None, check: bool = True, token: str = "operator.token"
) -> int:
    print(f"$ sscard {shlex.join(args)}", flush=True)
    env = {**ENV, "SSCARD_OPERATOR_TOKEN": str(DEMO / token)}
    result = subprocess.run([SSCARD, *args], input=stdin, text=True, env=env, check=False)
    if check and result.returncode != 0:
        sys.exit(_("demo step failed (exit {code})").format(code=result.returncode))
    return result.returncode


ENV = {
    **os.environ,
    "SSCARD_DATA_DIR": str(DEMO / "data"),
    "SSCARD_KEYSTORE": str(DEMO / "centre.ks"),
    # A demo only: a real centre types the passphrase at a hidden prompt.
    "SSCARD_KEYSTORE_PASSPHRASE": "demo centre passphrase 2026",
    "SSCARD_SERVICE_POINT": "demo-sp",
}


def agent_calls() -> None:
    """``sscard agent serve`` on the card with the PSAM's keys, called as a business system
    would (urllib here; Java, C# and browser examples in docs/agent.md)."""
    env = {**ENV, "SSCARD_OPERATOR_TOKEN": str(DEMO / "service.token")}
    print("$ sscard agent token", flush=True)
    token = subprocess.run(
        [SSCARD, "agent", "token"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    print(_("(the API token of this installation: give it to the business systems)"))
    argv = ["-r", f"virtual:{CARD}", "agent", "serve", "--port", "0",
            "--keystore", f"psam:virtual:{PSAM}"]  # fmt: skip
    print(f"$ sscard {shlex.join(argv)} &", flush=True)
    agent = subprocess.Popen([SSCARD, *argv], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert agent.stdout is not None
        line = agent.stdout.readline()
        print(line.rstrip(), flush=True)
        found = re.search(r"http://[0-9.]+:[0-9]+", line)
        if found is None:
            sys.exit(_("demo step failed (exit {code})").format(code=agent.poll()))
        url = found.group(0)
        lang = language().replace("_", "-")
        calls = (
            ("POST", "/api/iReadCardBas", {"type": 1}, token),
            ("GET", "/api/pin/status", None, token),
            ("POST", "/api/iReadCardBas", {"type": 1}, "not-the-token"),
        )
        for method, path, body, bearer in calls:
            shown = "$TOKEN" if bearer == token else bearer
            data = f" -d '{json.dumps(body)}'" if body is not None else ""
            print(f"$ curl -X {method} -H 'Authorization: Bearer {shown}'{data} {url}{path}")
            request = urllib.request.Request(
                url + path,
                data=json.dumps(body).encode() if body is not None else None,
                headers={
                    "Authorization": f"Bearer {bearer}",
                    "Content-Type": "application/json",
                    "Accept-Language": lang,
                },
                method=method,
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = json.load(response)
            except urllib.error.HTTPError as refused:  # 401: the answer has the same shape
                answer = json.load(refused)
            print(json.dumps(answer, ensure_ascii=False, indent=2), flush=True)
    finally:
        agent.send_signal(signal.SIGINT)
        agent.wait(30)


def main() -> int:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    say(_("A new installation: the first operator (an issuer) is created and logs in"))
    password = "demo password 2026"
    sscard(
        "operator",
        "add",
        "--bootstrap",
        "li.na",
        "--name",
        "Li Na",
        "--kdf-cost",
        "12",
        "--password-fd",
        "0",
        stdin=password + "\n",
    )
    sscard("operator", "login", "li.na", "--password-fd", "0", stdin=password + "\n")

    say(_("Key ceremony: a new encrypted root key store, random roots for every key slot"))
    keystore = str(DEMO / "centre.ks")
    sscard("keys", "init", "--kdf-cost", "12", keystore)
    sscard("keys", "generate", keystore, "--profile", "national-3")
    sscard("audit", "init-key", keystore)  # signs the audit trail's checkpoints
    sscard("keys", "list", keystore)

    say(_("A blank card from the card vendor, keyed from the transport root (emulated; SM4)"))
    sscard("virtual", "new", str(CARD), "--serial", "0310000000000001", "--keystore", keystore)
    sscard("-r", f"virtual:{CARD}", "info")

    say(_("The holder's data (validated before any card is touched)"))
    print(HOLDER.read_text(encoding="utf-8"), end="")

    say(_("Issue the card: keys diversified for this card, records, initial PIN, verification"))
    print(_("(the holder types a PIN twice; here it comes from stdin, never from argv)"))
    sscard(
        "-r",
        f"virtual:{CARD}",
        "issue",
        "--holder",
        str(HOLDER),
        "--pin-stdin",
        stdin="802461\n802461\n",
    )

    say(_("Read the card back: a 3.0 card shows its basic information after authentication"))
    print(_("(internal authentication, then the read key RKSSSE from the key store)"))
    sscard("-r", f"virtual:{CARD}", "read")
    sscard("-r", f"virtual:{CARD}", "info")

    say(_("The national read result (iReadCardBas), as business systems receive it"))
    sscard("-r", f"virtual:{CARD}", "read", "--national")

    say(_("The same card issued again: nothing to do (issuance is idempotent)"))
    sscard(
        "-r",
        f"virtual:{CARD}",
        "issue",
        "--holder",
        str(HOLDER),
        "--pin-stdin",
        stdin="802461\n802461\n",
    )

    say(_("More operators: a kiosk (cardholders change their PIN there) and service staff"))
    for op_id, name, role in (
        ("kiosk-01", "Kiosk 1", "kiosk"),
        ("zhao.lei", "Zhao Lei", "service"),
    ):
        sscard(
            "operator",
            "add",
            op_id,
            "--name",
            name,
            "--role",
            role,
            "--kdf-cost",
            "12",
            "--password-fd",
            "0",
            stdin="operator password 1\n",
        )
        sscard(
            "operator",
            "login",
            op_id,
            "--password-fd",
            "0",
            stdin="operator password 1\n",
            token=f"{role}.token",
        )

    say(_("At the kiosk, the holder changes the PIN: the current one, then the new one twice"))
    sscard(
        "-r",
        f"virtual:{CARD}",
        "pin",
        "change",
        "--pin-stdin",
        stdin="802461\n975310\n975310\n",
        token="kiosk.token",
    )
    sscard("-r", f"virtual:{CARD}", "pin", "verify", "--pin-stdin", stdin="975310\n")

    say(_("A weak new PIN is refused before the card is asked (exit 7)"))
    sscard(
        "-r",
        f"virtual:{CARD}",
        "pin",
        "change",
        "--pin-stdin",
        stdin="975310\n123456\n123456\n",
        token="kiosk.token",
        check=False,
    )

    say(_("Someone tries wrong PINs: the card counts down, then blocks the PIN (exit 3, then 4)"))
    for _attempt in range(6):
        sscard(
            "-r", f"virtual:{CARD}", "pin", "verify", "--pin-stdin", stdin="111222\n", check=False
        )
    sscard("-r", f"virtual:{CARD}", "pin", "status")
    sscard("-r", f"virtual:{CARD}", "pin", "verify", "--pin-stdin", stdin="975310\n", check=False)

    say(_("Service staff unblock the PIN with the service point's keys; the PIN stays the same"))
    sscard("-r", f"virtual:{CARD}", "pin", "unblock", token="service.token")
    sscard("-r", f"virtual:{CARD}", "pin", "verify", "--pin-stdin", stdin="975310\n")

    say(_("The holder forgot the PIN: staff set a new one (the holder types it twice)"))
    sscard(
        "-r",
        f"virtual:{CARD}",
        "pin",
        "reset",
        "--pin-stdin",
        stdin="586420\n586420\n",
        token="service.token",
    )
    sscard("-r", f"virtual:{CARD}", "pin", "verify", "--pin-stdin", stdin="586420\n")

    say(_("Every step is in the audit trail (an auditor reads it), hash-chained and verifiable"))
    sscard(
        "operator",
        "add",
        "wang.fang",
        "--name",
        "Wang Fang",
        "--role",
        "auditor",
        "--kdf-cost",
        "12",
        "--password-fd",
        "0",
        stdin="auditor password 1\n",
    )
    sscard(
        "operator",
        "login",
        "wang.fang",
        "--password-fd",
        "0",
        stdin="auditor password 1\n",
        token="auditor.token",
    )
    sscard("audit", "show", token="auditor.token")
    sscard("audit", "verify")

    say(_("The card.issued event waits in the outbox for the exchange platform (24 h rule)"))
    sscard("sync", "status", check=False)

    say(_("A service point gets a PSAM: the centre loads its city keys (never a root), enciphered"))
    sscard("virtual", "new", str(PSAM), "--psam", "--serial", "5053414D00000001",
           "--keystore", keystore)  # fmt: skip
    sscard(
        "psam", "issue", f"virtual:{PSAM}", "--keystore", keystore, "--kind", "service",
        "--city", "310100", "--terminal", "310100000001",
    )  # fmt: skip
    sscard("psam", "info", f"virtual:{PSAM}")

    say(_("At that service point no key is in software: a staff PIN reset with the PSAM"))
    sscard(
        "-r", f"virtual:{CARD}", "pin", "reset", "--pin-stdin",
        "--keystore", f"psam:virtual:{PSAM}",
        stdin="197346\n197346\n", token="service.token",
    )  # fmt: skip
    sscard("-r", f"virtual:{CARD}", "pin", "verify", "--pin-stdin", stdin="197346\n")

    say(_("A business system (Java, C#, a web page) calls the local card service on 127.0.0.1"))
    agent_calls()

    print("\n" + _("Demo done. The scratch installation is in .demo/ (delete it at will)."))
    return 0


if __name__ == "__main__":
    sys.exit(main())
