"""The agent's card service (sscard.agent.service) and its reader door (sscard.agent.reader).

In process: every national operation on issued emulated cards (national-3 and
national-2) behind the emulated PIN pad and behind a plain reader; the national
error codes; a card pulled mid-change leaves exactly one PIN working; a caller
finds the card in use; many threads at once never interleave APDUs; staff
actions with the PSAM (not the development key store) audited and reported.
Through pcscd + vpcd: presence events, and a raw pyscard client reading the
same 2.0 card agrees with ``read_basic``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sscard import audit, errors
from sscard.agent.answers import failure
from sscard.agent.reader import CardReader
from sscard.agent.service import AgentSettings, CardService, KeySource
from sscard.applets.cos import EmulatedCard
from sscard.applets.factory import new_psam_file
from sscard.applets.pcsc_rig import VPCD_READERS, card_in_reader
from sscard.applets.pinpad import EmulatedPinPad, Key, PullAt
from sscard.auth.store import Operator
from sscard.db import open_store
from sscard.exchange import outbox
from sscard.i18n import using
from sscard.issuance.psam import issue_psam
from sscard.keys.provider import open_security_module
from sscard.layout import load_profile
from sscard.pin import PinPolicyError
from sscard.transport import InProcessTransport
from sscard.vocab import INS
from tests.agentkit import PlainSlot, dev_keys, pad_reader, service
from tests.cardkit import PIN, PROFILES, dev_module, issued_card, pin_works, session, tries_left
from tests.storekit import init_store

NEW = "246801"
LIMIT = 6
STAFF = Operator("desk1", "Desk One", "service")
KIOSK = Operator("kiosk1", "Kiosk", "kiosk")


class Counting:
    """A card that counts its APDUs and notices two callers inside it at once."""

    def __init__(self, card: EmulatedCard, delay: float = 0.0) -> None:
        self.card = card
        self.apdus = 0
        self.overlaps = 0
        self.delay = delay
        self.changes = 0  # CHANGE PIN / PIN RELOAD commands seen
        self.tear_change: int | None = None  # tear the next CHANGE PIN after this many writes
        self._inside = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # atr, power_on, power_off, arm_tear, ...
        return getattr(self.card, name)

    def process(self, apdu: bytes) -> bytes:
        if not self._inside.acquire(blocking=False):
            self.overlaps += 1
            self._inside.acquire()
        try:
            self.apdus += 1
            if apdu[1] == INS.CHANGE_PIN:
                self.changes += 1
                if self.tear_change is not None:
                    self.card.arm_tear(1, self.tear_change)
                    self.tear_change = None
            if self.delay:
                time.sleep(self.delay)
            return self.card.process(apdu)
        finally:
            self._inside.release()


def the_pin(card: EmulatedCard | Counting) -> str:
    """Which of PIN and NEW the card holds (exactly one), leaving its counter full."""
    old, new = pin_works(card, PIN), pin_works(card, NEW)
    assert old != new, "exactly one PIN must work"
    right = PIN if old else NEW
    assert pin_works(card, right)  # the right PIN gives the counter back in full
    return right


def expected_basic(card: EmulatedCard, profile: str) -> dict[str, Any]:
    transport = InProcessTransport(card)
    transport.connect()
    try:
        return session(transport, profile).read_basic_info().to_json()
    finally:
        transport.disconnect()


def national(call: Callable[[], object]) -> tuple[int, errors.SscardError]:
    """The national code of the error ``call`` raises (it must raise one)."""
    with pytest.raises(errors.SscardError) as caught:
        call()
    answer = failure(caught.value)
    assert answer["code"] == caught.value.national_code
    return answer["code"], caught.value


@pytest.fixture(params=PROFILES)
def profile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def any_store(store_target: str) -> str:
    """The store of a staff-action test, on either engine (a centre's agent uses PostgreSQL)."""
    return init_store(store_target)


# --- every operation, on a PIN pad reader and a plain one ----------------------------------


def test_read_basic_on_both_readers(profile: str, store: Path) -> None:
    card = issued_card(profile)
    want = expected_basic(card, profile)
    pad = EmulatedPinPad(card)
    for reader in (pad_reader(pad), PlainSlot(card).reader()):
        got = service(reader, store, keys=dev_keys()).read_basic()
        line = got.pop("line")
        assert got == want
        assert line.startswith(f"{want['region']}|{want['ssn']}|{want['card_number']}|")
        assert line.count("|") == 11 and line.endswith("|")


def test_read_basic_without_keys_reads_a_2_0_card_but_not_a_3_0_card(store: Path) -> None:
    card2 = issued_card("national-2")
    got = service(PlainSlot(card2).reader(), store).read_basic()
    assert got["ssn"] == expected_basic(card2, "national-2")["ssn"]
    code, _exc = national(service(PlainSlot(issued_card()).reader(), store).read_basic)
    assert code == -2201  # no security module (the national "no PSAM")


def test_status_touches_no_card(store: Path) -> None:
    card = Counting(issued_card())
    svc = service(PlainSlot(card).reader(), store)  # type: ignore[arg-type]
    status = svc.status()
    assert status["card_present"] is True and status["busy"] is False
    assert status["holder"] is None and status["pin_pad"] is None
    assert card.apdus == 0
    assert svc.pin_status()["pin_pad"] is False
    assert svc.status()["pin_pad"] is False


def test_pin_status_verify_change_with_the_callers_pins(profile: str, store: Path) -> None:
    card = issued_card(profile)
    svc = service(PlainSlot(card).reader(), store)
    assert svc.pin_status() == {
        "tries_left": LIMIT,
        "try_limit": LIMIT,
        "blocked": False,
        "set": True,
        "pin_pad": False,
    }
    assert svc.verify_pin(PIN) == {
        "verified": True,
        "pin_pad": False,
        "tries_left": LIMIT,
        "try_limit": LIMIT,
    }
    assert svc.change_pin(PIN, NEW)["changed"] is True
    assert pin_works(card, NEW) and tries_left(card) == LIMIT


def test_verify_and_change_on_the_pin_pad(profile: str, store: Path) -> None:
    card = issued_card(profile)
    pad = EmulatedPinPad(card)
    svc = service(pad_reader(pad), store)
    assert svc.pin_status()["pin_pad"] is True
    pad.press(PIN)
    assert svc.verify_pin() == {
        "verified": True,
        "pin_pad": True,
        "tries_left": LIMIT,
        "try_limit": LIMIT,
    }
    pad.press(PIN, NEW, NEW)
    assert svc.change_pin()["pin_pad"] is True
    assert pad.queued == 0
    assert pin_works(card, NEW)
    assert svc.status()["pin_pad"] is True


def test_wrong_pin_then_blocked_with_national_codes(store: Path) -> None:
    card = issued_card()
    pad = EmulatedPinPad(card)
    svc = service(pad_reader(pad), store)
    code, exc = national(lambda: svc.verify_pin("000000"))
    assert code == -51 and failure(exc)["tries_left"] == LIMIT - 1
    pad.press("000000")
    code, exc = national(svc.verify_pin)  # on the pad
    assert code == -51 and failure(exc)["tries_left"] == LIMIT - 2
    code, exc = national(lambda: svc.change_pin("000000", NEW))
    assert code == -51 and failure(exc)["tries_left"] == LIMIT - 3
    for _n in range(3):
        national(lambda: svc.verify_pin("000000"))
    assert svc.pin_status()["blocked"] is True
    code, _exc = national(lambda: svc.verify_pin(PIN))
    assert code == -52
    assert national(lambda: svc.change_pin(PIN, NEW))[0] == -52


def test_pad_cancel_and_timeout_spend_no_try(store: Path) -> None:
    card = issued_card()
    pad = EmulatedPinPad(card)
    svc = service(pad_reader(pad), store)
    pad.press(Key.CANCEL)
    assert national(svc.verify_pin)[0] == -31
    assert national(svc.change_pin)[0] == -32  # nothing typed: the pad timed out
    assert tries_left(card) == LIMIT


# --- refused before the card is touched ------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda s: s.change_pin(PIN, "111111"), -23),  # one digit repeated
        (lambda s: s.change_pin(PIN, "123456"), -23),  # a run
        (lambda s: s.change_pin(PIN, PIN), -23),  # the previous PIN
        (lambda s: s.change_pin(PIN, "24680"), -33),  # too short
        (lambda s: s.change_pin(PIN, "24680a"), -33),
        (lambda s: s.change_pin("13579", NEW), -23),  # a malformed current PIN
        (lambda s: s.change_pin(PIN, None), -23),  # one PIN without the other
        (lambda s: s.verify_pin("12345x"), -23),
        (lambda s: s.reload_pin(STAFF, "000000"), -23),
    ],
)
def test_bad_pins_are_refused_before_any_card_command(
    store: Path, call: Callable[[CardService], object], code: int
) -> None:
    card = Counting(issued_card())
    svc = service(PlainSlot(card).reader(), store, keys=dev_keys())  # type: ignore[arg-type]
    got, exc = national(lambda: call(svc))
    assert got == code
    assert isinstance(exc, errors.InvalidInput)
    assert PIN not in str(exc) and "111111" not in str(exc)
    assert card.apdus == 0


def test_the_birth_date_rule_is_checked_on_the_card_before_the_pin_command(
    profile: str, store: Path
) -> None:
    card = Counting(issued_card(profile))
    svc = service(PlainSlot(card).reader(), store, keys=dev_keys())  # type: ignore[arg-type]
    with pytest.raises(PinPolicyError) as caught:
        svc.change_pin(PIN, "491231")  # the sample holder was born 1949-12-31
    assert caught.value.rule == "birth-date"
    assert "491231" not in str(caught.value)
    assert card.changes == 0
    assert pin_works(card, PIN) and tries_left(card) == LIMIT


def test_pinpad_modes(store: Path) -> None:
    card = Counting(issued_card())
    pad = EmulatedPinPad(card)  # type: ignore[arg-type]
    required = service(pad_reader(pad), store, pinpad="required")
    for call in (lambda: required.verify_pin(PIN), lambda: required.change_pin(PIN, NEW)):
        code, exc = national(call)
        assert code == -23 and "PIN pad" in str(exc)
    off = service(pad_reader(pad), store, pinpad="off")
    for call in (off.verify_pin, off.change_pin):
        code, exc = national(call)
        assert code == -23 and "PIN pad" in str(exc)
    assert card.apdus == 0
    pad.press(PIN)
    assert required.verify_pin()["pin_pad"] is True
    assert off.verify_pin(PIN)["pin_pad"] is False
    assert off.pin_status()["pin_pad"] is False
    with pytest.raises(errors.InvalidInput):
        AgentSettings(service_point="sp", pinpad="sometimes")


def test_no_pin_and_no_pad_is_refused_and_then_without_the_card(store: Path) -> None:
    card = Counting(issued_card())
    svc = service(PlainSlot(card).reader(), store)  # type: ignore[arg-type]
    code, exc = national(svc.verify_pin)
    assert code == -23 and "no PIN pad" in str(exc)
    seen = card.apdus
    national(svc.change_pin)
    assert card.apdus == seen  # the reader is known to have no pad now


# --- no card, and a card pulled mid-call ------------------------------------------------------


def test_no_card_is_national_minus_2(store: Path) -> None:
    slot = PlainSlot(None)
    svc = service(slot.reader(), store, keys=dev_keys())
    for call in (svc.read_basic, svc.pin_status, lambda: svc.verify_pin(PIN)):
        assert national(call)[0] == -2
    assert svc.status()["card_present"] is False
    slot.card = issued_card()
    assert svc.verify_pin(PIN)["verified"] is True


@pytest.mark.parametrize(
    ("at", "after"),
    [(PullAt.ENTRY, 0), (PullAt.ENTRY, 1), (PullAt.ENTRY, 2)]
    + [(PullAt.APDU, n) for n in range(4)],
)
def test_card_pulled_during_a_change_on_the_pad(store: Path, at: PullAt, after: int) -> None:
    card = issued_card()
    pad = EmulatedPinPad(card)
    svc = service(pad_reader(pad), store)
    pad.press(PIN, NEW, NEW)
    pad.pull_card(at, after=after)
    code, exc = national(svc.change_pin)
    assert code == -2 and isinstance(exc, errors.NoCard)
    assert svc.status() | {"busy": False} == svc.status()  # the lease was given back
    assert national(svc.pin_status)[0] == -2  # still out
    pad.clear_keys()
    pad.insert(card)
    left = svc.pin_status()["tries_left"]
    assert left in (LIMIT - 1, LIMIT)  # a counter the card can stand behind
    right = the_pin(card)
    if at is PullAt.ENTRY:
        assert right == PIN and left == LIMIT  # no APDU reached the card
    assert tries_left(card) == LIMIT
    assert svc.verify_pin(right)["tries_left"] == LIMIT


@pytest.mark.parametrize("writes", [0, 1, 2, 3])
def test_card_pulled_during_a_change_with_the_callers_pins(store: Path, writes: int) -> None:
    card = Counting(issued_card())
    svc = service(PlainSlot(card).reader(), store)  # type: ignore[arg-type]
    card.tear_change = writes
    code, _exc = national(lambda: svc.change_pin(PIN, NEW))
    assert code == -2
    assert svc.pin_status()["tries_left"] in (LIMIT - 1, LIMIT)
    assert card.changes == 1  # never repeated on its own
    the_pin(card)
    assert tries_left(card) == LIMIT


# --- one caller at a time -------------------------------------------------------------------


def test_a_caller_finds_the_card_in_use(store: Path) -> None:
    card = issued_card()
    reader = PlainSlot(card).reader()
    svc = service(reader, store, busy_wait=0.2)
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with reader.lease("PIN entry on the PIN pad", wait=1.0):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(5)
        assert svc.status()["busy"] is True
        assert svc.status()["holder"] == "PIN entry on the PIN pad"
        started = time.monotonic()
        code, exc = national(svc.read_basic)
        assert time.monotonic() - started >= 0.2
        assert code == -12 and isinstance(exc, errors.CardInUse)
        assert "in use" in str(exc) and "PIN entry on the PIN pad" in str(exc)
        assert exc.holder == "PIN entry on the PIN pad" and exc.retry_after >= 1.0
        answer = failure(exc)
        assert answer["error"] == "CardInUse" and answer["retry_after"] >= 1.0
        # a caller in another language reads the holder in theirs
        with using("zh_CN"), pytest.raises(errors.CardInUse) as in_zh:
            svc.verify_pin(PIN)
        zh = str(in_zh.value)
        assert "PIN entry on the PIN pad" not in zh and "密码键盘" in zh
    finally:
        release.set()
        thread.join()
    assert svc.status()["busy"] is False
    assert svc.verify_pin(PIN)["verified"] is True
    assert tries_left(card) == LIMIT  # the refused calls spent nothing


@pytest.mark.parametrize("wait", [0.02, 5.0])
def test_many_threads_at_once_never_interleave(store: Path, wait: float) -> None:
    """16 threads, each reading and verifying: every answer is right or CardInUse, and the
    card never has two callers inside it (a 2 ms APDU widens the window)."""
    card = Counting(issued_card("national-2"), delay=0.002)
    pad = EmulatedPinPad(card)  # type: ignore[arg-type]
    svc = service(pad_reader(pad), store, keys=dev_keys(), busy_wait=wait)
    want = expected_basic(card.card, "national-2")["ssn"]
    answers: list[str] = []
    lock = threading.Lock()
    go = threading.Barrier(16)

    def caller(n: int) -> None:
        go.wait()
        for i in range(4):
            try:
                if (n + i) % 3 == 0:
                    ok = svc.verify_pin(PIN)["verified"] is True
                elif (n + i) % 3 == 1:
                    ok = svc.pin_status()["tries_left"] == LIMIT
                else:
                    ok = svc.read_basic()["ssn"] == want
                outcome = "ok" if ok else "wrong"
            except errors.CardInUse:
                outcome = "in use"
            except Exception as exc:
                outcome = repr(exc)
            with lock:
                answers.append(outcome)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 64
    assert set(answers) <= {"ok", "in use"}, answers
    assert card.overlaps == 0
    assert "ok" in answers
    if wait >= 5.0:
        assert answers.count("ok") == 64
    assert tries_left(card) == LIMIT


# --- staff actions with the PSAM ---------------------------------------------------------------

PSAM_SERIAL = bytes.fromhex("5053414D00000009")


def psam_image(path: Path, profile: str) -> Path:
    """An emulated PSAM issued (as the centre does) from the keys the test cards carry."""
    psam = new_psam_file(path, PSAM_SERIAL, profile_name=profile)
    transport = InProcessTransport(psam)
    issue_psam(
        transport,
        dev_module(profile),
        load_profile(profile),
        kind="service",
        city="310100",
        terminal="310100000001",
    )
    transport.disconnect()
    return path


def psam_keys(path: Path, opened: list[str] | None = None) -> KeySource:
    """The agent's key source: ``psam:virtual:PATH`` through the library's one door."""

    def keys(profile: Any) -> Any:
        if opened is not None:
            opened.append(profile.name)
        return open_security_module(
            f"psam:virtual:{path}",
            slots=profile.key_scheme.slots,
            production=profile.production,
            secret=lambda label: pytest.fail(f"a PSAM needs no secret ({label})"),
        )

    return keys


def trail(store: Path, action: str) -> list[tuple[str, str | None, str | None]]:
    conn = open_store(store)
    try:
        audit.ensure_schema(conn)
        return [(r.outcome, r.error, r.operator) for r in audit.records(conn, action=action)]
    finally:
        conn.close()


def events(store: Path) -> list[tuple[str, dict[str, Any]]]:
    conn = open_store(store)
    try:
        outbox.ensure_schema(conn)
        return [(e.category, e.payload) for e in outbox.pending(conn)]
    finally:
        conn.close()


def test_staff_reset_and_unblock_through_the_psam(
    profile: str, any_store: str, tmp_path: Path
) -> None:
    store = any_store
    card = issued_card(profile)
    opened: list[str] = []
    keys = psam_keys(psam_image(tmp_path / "psam.img", profile), opened)
    svc = service(PlainSlot(card).reader(), store, keys=keys)
    for _n in range(LIMIT):
        national(lambda: svc.verify_pin("000000"))
    assert svc.pin_status()["blocked"] is True
    done = svc.unblock_pin(STAFF)
    assert done["action"] == "pin.unblock" and done["tries_left"] == LIMIT
    assert svc.verify_pin(PIN)["verified"] is True  # the PIN itself unchanged
    done = svc.reload_pin(STAFF, NEW)
    assert done["action"] == "pin.reset" and done["tries_left"] == LIMIT
    assert NEW not in repr(done)
    assert the_pin(card) == NEW
    assert opened == [profile]  # one PSAM session kept for the profile
    assert trail(store, "pin.unblock") == [("ok", None, "desk1")]
    assert trail(store, "pin.reset") == [("ok", None, "desk1")]
    sent = events(store)
    assert [c for c, _p in sent] == ["pin.unblocked", "pin.reset"]
    serial = expected_basic(card, profile)["card_id"]
    assert all(p["card_serial"] and p["ssn"] for _c, p in sent) and serial
    assert NEW not in repr(sent)


def test_staff_failures_are_audited_and_leave_the_card_alone(
    any_store: str, tmp_path: Path
) -> None:
    store = any_store
    card = issued_card("national-3")
    reader = PlainSlot(card).reader()
    tdes = psam_keys(psam_image(tmp_path / "3des.img", "national-2"))  # for 2.0 cards
    missing = psam_keys(tmp_path / "none.img")
    cases: list[tuple[KeySource | None, Operator, int, str]] = [
        (None, STAFF, -2201, "KeyStoreMissing"),
        (missing, STAFF, -2201, "PsamMissing"),
        (tdes, STAFF, -2202, "PsamLacksAlgorithm"),
    ]
    for keys, operator, code, error in cases:
        svc = service(reader, store, keys=keys)
        got, exc = national(lambda s=svc, o=operator: s.reload_pin(o, NEW))  # type: ignore[misc]
        assert (got, type(exc).__name__) == (code, error)
        assert NEW not in str(exc)
    _code, exc = national(lambda: service(reader, store, keys=dev_keys()).unblock_pin(KIOSK))
    assert isinstance(exc, errors.NotAuthorized)
    assert [e for _o, e, _w in trail(store, "pin.reset")] == [
        "KeyStoreMissing",
        "PsamMissing",
        "PsamLacksAlgorithm",
    ]
    assert {o for o, _e, _w in trail(store, "pin.reset")} == {"failed"}
    assert trail(store, "pin.unblock") == [("refused", "NotAuthorized", "kiosk1")]
    assert events(store) == []
    assert the_pin(card) == PIN and tries_left(card) == LIMIT


# --- through pcscd + vpcd -----------------------------------------------------------------------

SSSE_AID = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")  # "sx1.sh.社会保障" in GBK


def raw_read(reader: str) -> dict[str, str]:
    """A 2.0 card's basic information as a terminal reads it, with plain pyscard: SELECT
    SSSE, SELECT EF05 / EF06, READ RECORD by identifier (docs/card.md)."""
    from smartcard.System import readers

    (found,) = [r for r in readers() if str(r) == reader]
    connection = found.createConnection()
    connection.connect()

    def send(hex_apdu: str) -> bytes:
        data, sw1, sw2 = connection.transmit(list(bytes.fromhex(hex_apdu.replace(" ", ""))))
        assert (sw1, sw2) == (0x90, 0x00), f"{hex_apdu}: {sw1:02X}{sw2:02X}"
        return bytes(data)

    def item(tag: int, length: int) -> bytes:
        answer = send(f"00 B2 {tag:02X} 00 {length:02X}")
        assert answer[0] == tag and answer[1] == len(answer) - 2
        return answer[2:]

    try:
        send(f"00 A4 04 00 {len(SSSE_AID):02X} {SSSE_AID.hex()}")
        send("00 A4 00 00 02 EF 05")
        card_id = item(0x01, 0x12).hex().upper()
        version = item(0x03, 0x06).decode("ascii")
        issued = item(0x05, 0x06).hex()
        expiry = item(0x06, 0x06).hex()
        number = item(0x07, 0x0B).decode("ascii")
        send("00 A4 00 00 02 EF 06")
        ssn = item(0x08, 0x14).decode("ascii")
        name = (item(0x09, 0x20) + item(0x4E, 0x16)).rstrip(b"\x00\xff").decode("gbk")
        atr = bytes(connection.getATR()).hex().upper()
    finally:
        connection.disconnect()
    return {
        "region": card_id[:6],
        "card_id": card_id,
        "spec_version": version,
        "issue_date": issued,
        "expiry_date": expiry,
        "card_number": number,
        "ssn": ssn,
        "name": name.rstrip("\x00"),
        "atr": atr,
    }


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.pcsc
def test_presence_events_and_a_raw_pyscard_client_through_pcscd(
    vpcd_port: int, store: Path
) -> None:
    name = VPCD_READERS[vpcd_port]
    card = issued_card("national-2")
    seen: list[bool] = []
    stop = threading.Event()
    watcher: threading.Thread | None = None
    try:
        with card_in_reader(card, vpcd_port):
            reader = CardReader.open(name)
            assert reader.name == name and not reader.standing
            svc = service(reader, store, keys=dev_keys())
            watcher = reader.watch(seen.append, stop)
            assert wait_for(lambda: seen == [True]), seen
            got = svc.read_basic()
            raw = raw_read(name)
            assert {k: got[k] for k in raw} == raw
            assert got["line"].startswith("|".join(raw[k] for k in ("region", "ssn")))
            assert svc.verify_pin(PIN)["tries_left"] == LIMIT
            assert svc.pin_status()["pin_pad"] is False  # vpcd has no part 10
        assert wait_for(lambda: seen == [True, False]), seen  # the bridge closed: pulled
        assert svc.status()["card_present"] is False
        assert national(svc.read_basic)[0] == -2
        with card_in_reader(card, vpcd_port):
            assert wait_for(lambda: seen == [True, False, True]), seen
            assert svc.read_basic()["ssn"] == raw["ssn"]
            stop.set()  # the watch ends while the card is still in
            watcher.join(5)
    finally:
        stop.set()
        if watcher is not None:
            watcher.join(5)
    assert watcher is not None and not watcher.is_alive()
    assert seen == [True, False, True]
