"""Diversifications and MACs per second: sscard software path vs PKCS#11 vs raw ``cryptography``.

Run: ``.venv/bin/python bench/keys.py [--seconds S]``. All paths run in the same
process on the same keys; the PKCS#11 rows use a throw-away SoftHSM2 token made
in a temp dir (skipped if SoftHSM2 is missing). "raw" rows call ``cryptography``
directly: "cached" reuses one cipher context per key (the fastest way to use the
library), "fresh" builds a Cipher per call (what naive code does). The rows
that are compared (raw vs sscard diversify, raw vs sscard MAC) are measured in
interleaved slices, so load from other processes affects them alike.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sscard.keys import diversify, line_mac
from sscard.keys.entry import KeyEntry
from sscard.keys.scheme import KeySlot
from sscard.keys.security_module import SecurityModule, SoftwareSecurityModule
from sscard.keys.software_store import SoftwareKeyStore

KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
FACTOR = bytes.fromhex("3100000000000042")
IV = bytes.fromhex("0102030405060708")
APDU = bytes.fromhex("04DC010C18") + bytes(20)  # UPDATE RECORD header + 20-byte TLV
CITY = "310100"
INVERT = bytes(b ^ 0xFF for b in range(256))  # F -> F xor FF..FF, one C call
SLOTS = {alg: KeySlot("SSSE", "STK", 1, 1, alg) for alg in ("3des", "sm4")}


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds``."""
    fn()
    n, batch, start = 0, 200, time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def rates(fns: Sequence[Callable[[], object]], seconds: float, rounds: int = 15) -> list[float]:
    """Calls per second of each of ``fns``, measured in interleaved slices.

    Each round runs every function for ``seconds / rounds`` in a new random
    order; a function's rate is its median over the rounds, so load from other
    processes hits all paths of a comparison alike.
    """
    samples: list[list[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    for _ in range(rounds):
        random.shuffle(order)
        for i in order:
            samples[i].append(rate(fns[i], seconds / rounds))
    return [statistics.median(s) for s in samples]


def _alg(algorithm: str, key: bytes) -> algorithms.SM4 | TripleDES:
    if algorithm == "sm4":
        return algorithms.SM4(key)
    return TripleDES(key * 3 if len(key) == 8 else key + key[:8])


def raw_diversify_cached(algorithm: str) -> Callable[[], bytes]:
    enc = Cipher(_alg(algorithm, KEY), modes.ECB()).encryptor()

    def run() -> bytes:
        return enc.update(FACTOR + FACTOR.translate(INVERT))

    return run


def raw_diversify_fresh(algorithm: str) -> Callable[[], bytes]:
    def run() -> bytes:
        inv = FACTOR.translate(INVERT)
        return Cipher(_alg(algorithm, KEY), modes.ECB()).encryptor().update(FACTOR + inv)

    return run


def _padded(n: int) -> bytes:
    return APDU + b"\x80" + bytes(-(len(APDU) + 1) % n)


def raw_mac_cached(algorithm: str) -> Callable[[], bytes]:
    """Cached ECB contexts; CBC needs a new context per IV (the challenge changes per MAC)."""
    if algorithm == "sm4":
        data, iv = _padded(16), IV + bytes(8)

        def sm4() -> bytes:
            return Cipher(algorithms.SM4(KEY), modes.CBC(iv)).encryptor().update(data)[-16:][:4]

        return sm4
    data = _padded(8)
    kl, kr = KEY[:8], KEY[8:]
    dec_r = Cipher(_alg("3des", kr), modes.ECB()).decryptor()
    enc_l = Cipher(_alg("3des", kl), modes.ECB()).encryptor()
    left = _alg("3des", kl)

    def des() -> bytes:
        y = Cipher(left, modes.CBC(IV)).encryptor().update(data)[-8:]
        return enc_l.update(dec_r.update(y))[:4]

    return des


def raw_mac_fresh(algorithm: str) -> Callable[[], bytes]:
    if algorithm == "sm4":
        return raw_mac_cached("sm4")
    data = _padded(8)
    kl, kr = KEY[:8], KEY[8:]

    def des() -> bytes:
        y = Cipher(_alg("3des", kl), modes.CBC(IV)).encryptor().update(data)[-8:]
        y = Cipher(_alg("3des", kr), modes.ECB()).decryptor().update(y)
        return Cipher(_alg("3des", kl), modes.ECB()).encryptor().update(y)[:4]

    return des


def softhsm_module() -> tuple[SecurityModule, Callable[[], object]] | None:
    """A Pkcs11SecurityModule on a fresh SoftHSM2 token holding the 3DES root."""
    from sscard.keys.pkcs11_module import SOFTHSM2, Pkcs11SecurityModule, Pkcs11Token

    if not (os.path.exists(SOFTHSM2) and shutil.which("softhsm2-util")):
        return None
    tmp = Path(tempfile.mkdtemp(prefix="sscard-bench-hsm-"))
    (tmp / "tokens").mkdir()
    (tmp / "softhsm2.conf").write_text(f"directories.tokendir = {tmp}/tokens\n")
    os.environ["SOFTHSM2_CONF"] = str(tmp / "softhsm2.conf")
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "bench", "--so-pin", "87654321",
         "--pin", "123456"],
        check=True, capture_output=True,
    )  # fmt: skip
    token = Pkcs11Token("bench", "123456")
    token.import_key(_root("3des"))
    return Pkcs11SecurityModule(token, city=CITY), lambda: shutil.rmtree(tmp)


def _root(algorithm: str) -> KeyEntry:
    """The benchmark root: a fixed key so every path works on the same bytes."""
    return KeyEntry(SLOTS[algorithm].ref, 1, algorithm, 3, 0, KEY)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=0.5, help="time per row (default 0.5)")
    s = ap.parse_args().seconds

    rows: list[tuple[str, str, str, float, float | None]] = []
    for alg in ("3des", "sm4"):
        store = SoftwareKeyStore([_root(alg)])
        soft = SoftwareSecurityModule(store, city=CITY)
        slot = SLOTS[alg]
        raw_d, fresh_d, lib_d = rates(
            [
                raw_diversify_cached(alg),
                raw_diversify_fresh(alg),
                lambda a=alg: diversify(KEY, FACTOR, algorithm=a),
            ],
            3 * s,
        )
        rows.append(("diversify 1 level", alg, "raw cryptography, cached context", raw_d, None))
        rows.append(("diversify 1 level", alg, "raw cryptography, fresh Cipher", fresh_d, raw_d))
        rows.append(("diversify 1 level", alg, "sscard.keys.diversify", lib_d, raw_d))
        mac_paths = [raw_mac_cached(alg), lambda a=alg: line_mac(KEY, APDU, iv=IV, algorithm=a)]
        if alg == "3des":
            mac_paths.append(raw_mac_fresh(alg))
        raw_m, lib_m, *fresh_m = rates(mac_paths, len(mac_paths) * s)
        rows.append(("line MAC (25 B)", alg, "raw cryptography, cached ECB", raw_m, None))
        for r in fresh_m:
            rows.append(("line MAC (25 B)", alg, "raw cryptography, fresh Cipher", r, raw_m))
        rows.append(("line MAC (25 B)", alg, "sscard.keys.line_mac", lib_m, raw_m))
        rows.append(
            (
                "card MAC: 3 levels + MAC",
                alg,
                "SoftwareSecurityModule.mac",
                rate(lambda sl=slot, m=soft: m.mac(FACTOR, sl, APDU, iv=IV), s),
                None,
            )
        )
        rows.append(
            (
                "card cryptogram: 3 levels + E",
                alg,
                "SoftwareSecurityModule.external_auth",
                rate(lambda sl=slot, m=soft: m.external_auth(FACTOR, sl, IV), s),
                None,
            )
        )

    hsm = softhsm_module()
    if hsm is not None:
        module, cleanup = hsm
        slot = SLOTS["3des"]
        rows.append(
            (
                "card cryptogram: 3 levels + E",
                "3des",
                "Pkcs11SecurityModule.external_auth (SoftHSM2)",
                rate(lambda: module.external_auth(FACTOR, slot, IV), s),
                None,
            )
        )
        rows.append(
            (
                "card MAC: 3 levels + MAC",
                "3des",
                "Pkcs11SecurityModule.mac (card key cached)",
                rate(lambda: module.mac(FACTOR, slot, APDU, iv=IV), s),
                None,
            )
        )
        rows.append(
            (
                "card MAC: 3 levels + MAC",
                "3des",
                "Pkcs11SecurityModule.mac (new card each call)",
                rate(_new_card_mac(module, slot), s),
                None,
            )
        )
        cleanup()
    else:
        print("SoftHSM2 not installed: PKCS#11 rows skipped", file=sys.stderr)

    print(f"{'operation':<31} {'alg':<5} {'path':<48} {'ops/s':>10}  {'raw/this':>8}")
    for op, alg, path, r, base in rows:
        ratio = f"{base / r:8.2f}" if base else "       -"
        print(f"{op:<31} {alg:<5} {path:<48} {r:>10,.0f}  {ratio}")
    print(
        "raw/this: time per call relative to the cached raw cryptography call"
        " (target: diversify <= 1.5, others <= 2)"
    )


def _new_card_mac(module: SecurityModule, slot: KeySlot) -> Callable[[], bytes]:
    counter = iter(range(1 << 62))

    def run() -> bytes:
        serial = next(counter).to_bytes(8, "big")
        return module.mac(serial, slot, APDU, iv=IV)

    return run


if __name__ == "__main__":
    main()
