"""SecurityModule over the software store and the development store (docs/keys.md)."""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sscard.errors import DevelopmentKeysRefused, InvalidInput, UnknownKeyReference
from sscard.keys import diversify, line_mac
from sscard.keys.algorithms import (
    auth_cryptogram,
    card_factors,
    decipher_record,
    diversify_path,
    kcv,
)
from sscard.keys.ceremony import combine, export_zone, generate_root, rotate, split, zone_key
from sscard.keys.dev import (
    DEV_CITY,
    DevelopmentKeyStore,
    check_production,
    development_card_key,
    development_module,
    development_root,
)
from sscard.keys.records import parse_key_record
from sscard.keys.scheme import KeyScheme, KeySlot
from sscard.keys.security_module import SoftwareSecurityModule
from sscard.keys.software_store import SoftwareKeyStore
from tests.test_keys_algorithms import _retail_mac_reference, _sm4_cbc_mac_reference

SERIAL = bytes.fromhex("3100000000000042")
CHALLENGE = bytes.fromhex("A1A2A3A4A5A6A7A8")
CITY = "310100"


def _scheme(algorithm: str) -> KeyScheme:
    return KeyScheme.from_data(
        [
            {"df": "SSSE", "type": "MK", "id": 0, "version": 1, "algorithm": algorithm},
            {"df": "SSSE", "type": "EAK", "id": 1, "version": 1, "algorithm": algorithm},
            {"df": "SSSE", "type": "IAK", "id": 1, "version": 1, "algorithm": algorithm},
            {"df": "SSSE", "type": "STK", "id": 1, "version": 1, "algorithm": algorithm},
            {"df": "MF", "type": "TK", "id": 0, "version": 1, "algorithm": algorithm, "levels": 1},
        ]
    )


def _modules(
    algorithm: str,
) -> tuple[SoftwareKeyStore, SoftwareSecurityModule, SoftwareSecurityModule]:
    scheme = _scheme(algorithm)
    roots = SoftwareKeyStore([generate_root(s) for s in scheme.slots], kind="root")
    zone = SoftwareKeyStore(export_zone(roots.entries(), CITY), kind="zone", city=CITY)
    return roots, SoftwareSecurityModule(roots, city=CITY), SoftwareSecurityModule(zone)


def _card_key(roots: SoftwareKeyStore, slot: KeySlot) -> bytes:
    """Independent path: three single-level diversify() calls from the root."""
    key = roots.get(slot.ref).value
    for f in card_factors(CITY, SERIAL, slot.levels):
        key = diversify(key, f, algorithm=slot.algorithm)
    return key


@pytest.mark.parametrize("algorithm", ["3des", "sm4"])
def test_root_and_zone_modules_agree_with_the_card_key(algorithm: str) -> None:
    roots, at_centre, at_service_point = _modules(algorithm)
    eak = _scheme(algorithm).find("SSSE", "EAK", 1)
    card_eak = _card_key(roots, eak)
    expected = auth_cryptogram(card_eak, CHALLENGE, algorithm=algorithm)
    assert at_centre.external_auth(SERIAL, eak, CHALLENGE) == expected
    assert at_service_point.external_auth(SERIAL, eak, CHALLENGE) == expected
    assert at_service_point.external_auth(SERIAL, "SSSE/EAK/01", CHALLENGE) == expected

    stk = _scheme(algorithm).find("SSSE", "STK", 1)
    data = bytes.fromhex("841E000004")
    mac = line_mac(_card_key(roots, stk), data, iv=CHALLENGE, algorithm=algorithm)
    assert at_service_point.mac(SERIAL, stk, data, iv=CHALLENGE) == mac
    assert at_centre.verify_mac(SERIAL, stk, data, mac, iv=CHALLENGE)
    assert not at_centre.verify_mac(SERIAL, stk, data, bytes(4), iv=CHALLENGE)
    assert at_service_point.card_kcv(SERIAL, stk) == kcv(_card_key(roots, stk), algorithm=algorithm)


@pytest.mark.parametrize("algorithm", ["3des", "sm4"])
def test_different_cards_get_different_keys(algorithm: str) -> None:
    _, sm, _ = _modules(algorithm)
    other = bytes.fromhex("3100000000000043")
    assert sm.external_auth(SERIAL, "SSSE/EAK/01", CHALLENGE) != sm.external_auth(
        other, "SSSE/EAK/01", CHALLENGE
    )


@pytest.mark.parametrize("algorithm", ["3des", "sm4"])
def test_internal_auth_verification(algorithm: str) -> None:
    roots, sm, _ = _modules(algorithm)
    iak = _scheme(algorithm).find("SSSE", "IAK", 1)
    genuine = auth_cryptogram(_card_key(roots, iak), CHALLENGE, algorithm=algorithm)
    assert sm.verify_internal_auth(SERIAL, iak, CHALLENGE, genuine)
    assert not sm.verify_internal_auth(SERIAL, iak, CHALLENGE, bytes(len(genuine)))


@pytest.mark.parametrize("algorithm", ["3des", "sm4"])
def test_write_key_record_deciphers_on_the_card(algorithm: str) -> None:
    roots, _, sm = _modules(algorithm)
    scheme = _scheme(algorithm)
    mk, eak = scheme.find("SSSE", "MK", 0), scheme.find("SSSE", "EAK", 1)
    header = bytes([0x84, 0xD4, 0x01, eak.id])
    out = sm.write_key(SERIAL, eak, under=mk, header=header, challenge=CHALLENGE)
    enc, mac = out.data[:-4], out.data[-4:]
    card_mk = _card_key(roots, mk)
    # What the card does: check the MAC, decipher, parse.
    assert (
        line_mac(card_mk, header + bytes([len(out.data)]) + enc, iv=CHALLENGE, algorithm=algorithm)
        == mac
    )
    record = parse_key_record(decipher_record(card_mk, enc, algorithm=algorithm))
    assert (record.type, record.id, record.version, record.algorithm) == ("EAK", 1, 1, algorithm)
    assert record.value == _card_key(roots, eak)
    assert out.kcv == kcv(record.value, algorithm=algorithm)
    assert record.value.hex() not in repr(out).lower() and record.value.hex() not in repr(record)


def test_module_refuses_mismatched_or_unknown_keys() -> None:
    _, sm, zone_sm = _modules("sm4")
    with pytest.raises(InvalidInput):  # profile says 3des, store holds sm4
        sm.external_auth(SERIAL, KeySlot("SSSE", "EAK", 1, 1, "3des"), CHALLENGE)
    with pytest.raises(UnknownKeyReference):
        sm.external_auth(SERIAL, "DF03/EAK/01", CHALLENGE)
    with pytest.raises(UnknownKeyReference):  # only version 1 exists
        sm.external_auth(SERIAL, KeySlot("SSSE", "EAK", 1, 2, "sm4"), CHALLENGE)
    with pytest.raises(InvalidInput):
        sm.external_auth(SERIAL[:7], "SSSE/EAK/01", CHALLENGE)
    with pytest.raises(UnknownKeyReference):  # TK has one level: never exported to a zone
        zone_sm.external_auth(SERIAL, "MF/TK/00", CHALLENGE)
    other_city = SoftwareSecurityModule(zone_sm._store, city="320100")
    with pytest.raises(InvalidInput):
        other_city.external_auth(SERIAL, "SSSE/EAK/01", CHALLENGE)


def test_zone_key_needs_two_levels() -> None:
    tk = generate_root(KeySlot("MF", "TK", 0, 1, "sm4", levels=1))
    with pytest.raises(InvalidInput):
        zone_key(tk, CITY)


def test_split_and_combine() -> None:
    root = generate_root(KeySlot("SSSE", "MK", 0, 1, "3des"))
    parts = split(root, 3)
    assert len({p.kcv for p in parts}) == 3 and all(p.value != root.value for p in parts)
    assert combine(parts).kcv == root.kcv
    assert combine(parts[:2]).kcv != root.kcv  # all components are needed
    with pytest.raises(InvalidInput):
        split(root, 1)
    with pytest.raises(InvalidInput):
        combine([parts[0], generate_root(KeySlot("SSSE", "EAK", 1, 1, "3des"))])


def test_rotate_keeps_old_version() -> None:
    store = SoftwareKeyStore([generate_root(KeySlot("SSSE", "MK", 0, 1, "sm4"))])
    store.add(rotate(store.get("SSSE/MK/00")))
    assert store.versions("SSSE/MK/00") == [1, 2]
    assert store.get("SSSE/MK/00", 1).kcv != store.get("SSSE/MK/00", 2).kcv


# --- development keys ---------------------------------------------------------


def test_development_keys_are_the_documented_ones(caplog: pytest.LogCaptureFixture) -> None:
    # Pinned so that docs/keys.md stays true: computed by the formula in sscard/keys/dev.py.
    assert development_root("SSSE/EAK/01", 1, "sm4").hex().upper() == DEV_EAK_SM4
    slots = _scheme("sm4").slots
    with caplog.at_level(logging.WARNING, logger="sscard.keys"):
        sm = development_module(slots)
    assert "DEVELOPMENT" in caplog.text
    assert sm.development and "DEVELOPMENT" in repr(sm._store)
    eak = slots[1]
    card = development_card_key(eak, SERIAL)
    assert card == diversify_path(
        development_root(eak.ref, 1, "sm4"), card_factors(DEV_CITY, SERIAL), algorithm="sm4"
    )
    assert sm.external_auth(SERIAL, eak, CHALLENGE) == auth_cryptogram(
        card, CHALLENGE, algorithm="sm4"
    )


DEV_EAK_SM4 = "15810186B922CC4855BF651AF3666429"


def test_production_refuses_development_keys() -> None:
    dev = development_module(_scheme("3des").slots)
    check_production(dev, production=False)
    with pytest.raises(DevelopmentKeysRefused):
        check_production(dev, production=True)
    with pytest.raises(DevelopmentKeysRefused):
        check_production(DevelopmentKeyStore(_scheme("3des").slots), production=True)
    _, real, _ = _modules("3des")
    check_production(real, production=True)  # a real store passes


def test_development_store_is_never_saved() -> None:
    with pytest.raises(DevelopmentKeysRefused):
        DevelopmentKeyStore(_scheme("sm4").slots).save()


@pytest.mark.parametrize("name", ["national-3", "national-2"])
def test_development_module_serves_every_slot_of_a_shipped_profile(name: str) -> None:
    from sscard.layout.loader import load_profile

    profile = load_profile(name)
    sm = development_module(profile.key_scheme.slots)
    for slot in profile.key_scheme.slots:
        card = development_card_key(slot, SERIAL)
        assert sm.card_kcv(SERIAL, slot) == kcv(card, algorithm=slot.algorithm)
    check_production(sm, production=profile.production)  # shipped profiles are development
    with pytest.raises(DevelopmentKeysRefused):
        check_production(sm, production=True)


@pytest.mark.parametrize("algorithm", ["3des", "sm4"])
def test_protect_builds_mac_and_enciphered_pin_reload(algorithm: str) -> None:
    roots, sm, _ = _modules(algorithm)
    stk = _scheme(algorithm).find("SSSE", "STK", 1)
    card_stk = _card_key(roots, stk)
    # APPLICATION BLOCK: no data, just the MAC over 84 1E 00 00 04.
    block = sm.protect(SERIAL, stk, bytes.fromhex("841E0000"), challenge=CHALLENGE)
    assert block == line_mac(
        card_stk, bytes.fromhex("841E000004"), iv=CHALLENGE, algorithm=algorithm
    )
    # PIN RELOAD-style: E_K(03 ‖ PIN ‖ 80…) ‖ MAC, the card deciphers the PIN back.
    pin = bytes.fromhex("123456")
    data = sm.protect(
        SERIAL, stk, bytes.fromhex("845E0000"), pin, challenge=CHALLENGE, encipher=True
    )
    enc, mac = data[:-4], data[-4:]
    assert decipher_record(card_stk, enc, algorithm=algorithm) == pin
    header = bytes.fromhex("845E0000") + bytes([len(data)])
    assert line_mac(card_stk, header + enc, iv=CHALLENGE, algorithm=algorithm) == mac
    with pytest.raises(InvalidInput):
        sm.protect(SERIAL, stk, b"\x84\x1e", challenge=CHALLENGE)


# --- issue 14: card identification code MAC, process factor (docs/keys.md) ---------
# Checked against constructions made here from fresh `cryptography` ciphers, not
# through sscard.keys.algorithms.

PROCESS_FACTOR = bytes.fromhex("B1B2B3B4B5B6B7B8")
PROVINCE, CITY_FACTOR = b"310000sh", b"310100sx"  # the spec's province and city factors


def _ecb(key: bytes, data: bytes, algorithm: str) -> bytes:
    cipher = algorithms.SM4(key) if algorithm == "sm4" else TripleDES(key + key[:8])
    return Cipher(cipher, modes.ECB()).encryptor().update(data)


def _child(key: bytes, factor: bytes, algorithm: str) -> bytes:
    """One diversification level: ECB over F ‖ ~F (E(F) ‖ E(~F) for 3DES)."""
    return _ecb(key, factor + bytes(b ^ 0xFF for b in factor), algorithm)


def _cryptogram(key: bytes, challenge: bytes, algorithm: str) -> bytes:
    return _ecb(key, challenge + bytes(8 if algorithm == "sm4" else 0), algorithm)


def _zero_iv_mac(key: bytes, data: bytes, algorithm: str) -> bytes:
    if algorithm == "sm4":
        return _sm4_cbc_mac_reference(key, data, bytes(16))
    return _retail_mac_reference(key, data, bytes(8))


@pytest.mark.parametrize("algorithm", ["3des", "sm4"])
def test_card_id_mac_is_the_line_mac_under_the_cards_own_iak(algorithm: str) -> None:
    roots, at_centre, at_service_point = _modules(algorithm)
    iak = _scheme(algorithm).find("SSSE", "IAK", 1)
    root = roots.get(iak.ref).value
    city_iak = _child(_child(root, PROVINCE, algorithm), CITY_FACTOR, algorithm)
    card_iak = _child(city_iak, SERIAL, algorithm)
    # region ‖ RID ‖ card sequence (last 4 bytes of the chip serial) ‖ chip serial
    data = bytes.fromhex("310100" + "D156000005") + SERIAL[-4:] + SERIAL
    expected = _zero_iv_mac(card_iak, data, algorithm)
    assert at_centre.card_id_mac(SERIAL, iak, data) == expected
    assert at_service_point.card_id_mac(SERIAL, iak, data) == expected
    assert at_service_point.verify_card_id_mac(SERIAL, "SSSE/IAK/01", data, expected)
    assert not at_centre.verify_card_id_mac(SERIAL, iak, data[:-1] + b"\x43", expected)
    assert not at_centre.verify_card_id_mac(SERIAL, iak, data, bytes(4))
    # the city key does not make it: nothing above the card level is used (or leaves a token)
    assert _zero_iv_mac(city_iak, data, algorithm) != expected


@pytest.mark.parametrize("algorithm", ["3des", "sm4"])
def test_process_factor_makes_a_session_key_one_level_below_the_card_key(algorithm: str) -> None:
    roots, at_centre, at_service_point = _modules(algorithm)
    scheme = _scheme(algorithm)
    eak, iak = scheme.find("SSSE", "EAK", 1), scheme.find("SSSE", "IAK", 1)

    def session_key(slot: KeySlot) -> bytes:
        key = roots.get(slot.ref).value
        for factor in (PROVINCE, CITY_FACTOR, SERIAL, PROCESS_FACTOR):
            key = _child(key, factor, algorithm)
        return key

    expected = _cryptogram(session_key(eak), CHALLENGE, algorithm)
    for module in (at_centre, at_service_point):
        assert module.external_auth(SERIAL, eak, CHALLENGE, process_factor=PROCESS_FACTOR) == (
            expected
        )
    assert at_centre.external_auth(SERIAL, eak, CHALLENGE) != expected  # no factor: card key
    # INTERNAL AUTHENTICATE with process factor ‖ random: the card answers under its session key
    answer = _cryptogram(session_key(iak), CHALLENGE, algorithm)
    assert at_service_point.verify_internal_auth(
        SERIAL, iak, CHALLENGE, answer, process_factor=PROCESS_FACTOR
    )
    assert not at_service_point.verify_internal_auth(SERIAL, iak, CHALLENGE, answer)
    other = bytes.fromhex("B1B2B3B4B5B6B7B9")
    assert not at_centre.verify_internal_auth(SERIAL, iak, CHALLENGE, answer, process_factor=other)
    with pytest.raises(InvalidInput, match="process factor"):
        at_centre.external_auth(SERIAL, eak, CHALLENGE, process_factor=bytes(7))
