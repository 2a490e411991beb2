"""`make demo`: the main job of sscard on an emulated card, through the real PC/SC stack.

Until issuance lands (issue 6), this shows the foundation: pcscd with the vpcd
driver, a scripted test card plugged into a virtual reader, and the `sscard`
command line listing readers and exchanging APDUs with it (also as JSON, and
with a redacted APDU trace).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from sscard.applets import ScriptedCard
from sscard.applets.pcsc_rig import VPCD_READERS, card_in_reader, reader_lock, running_pcscd

SSCARD = str(Path(sys.executable).with_name("sscard"))


def step(title: str, *args: str, stdin: str | None = None) -> None:
    print(f"\n== {title}\n$ sscard {shlex.join(args)}", flush=True)
    subprocess.run([SSCARD, *args], input=stdin, text=True, check=False)


def main() -> int:
    card = ScriptedCard(
        rules={bytes.fromhex("00A4040007A0000000031010"): bytes.fromhex("6F07840507A00000009000")}
    )
    with running_pcscd(), reader_lock() as port:
        reader = VPCD_READERS[port]
        print(f"pcscd is running; plugging a scripted test card into {reader!r}")
        with card_in_reader(card, port):
            step("Readers and cards", "readers")
            step(
                "Select an application, then echo data (ECHO, 80 EE)",
                "-r",
                reader,
                "apdu",
                "00A4040007A0000000031010",
                "80EE00000548656C6C6F00",
            )
            step(
                "A file that is not there: the status word is explained",
                "-r",
                reader,
                "apdu",
                "00A40000023F00",
            )
            step("The same as JSON", "--json", "-r", reader, "apdu", "80EE0000024F4B00")
            step(
                "A VERIFY from stdin with the APDU trace on: the PIN never shows",
                "--log-level",
                "trace",
                "-r",
                reader,
                "apdu",
                "--stdin",
                stdin="0020000003123456\n",
            )
    print("\nIssuing social security cards on the emulated card arrives with issue 6.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
