"""``sscard keys``: the ceremony end to end on real files, exit codes, no secret in the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sscard.cli.main import cli
from sscard.keys.security_module import SoftwareSecurityModule
from sscard.keys.software_store import SoftwareKeyStore

PW = "centre passphrase 1"
SCHEME = {
    "keys": [
        {"df": "SSSE", "type": "MK", "id": 0, "version": 1, "algorithm": "3des"},
        {"df": "SSSE", "type": "EAK", "id": 1, "version": 1, "algorithm": "3des"},
        {"df": "MF", "type": "TK", "id": 0, "version": 1, "algorithm": "3des", "levels": 1},
    ]
}
SERIAL = bytes.fromhex("3100000000000042")
R8 = bytes.fromhex("0102030405060708")


def sscard(*args: str, input: str | None = None, env_pw: str | None = PW) -> Result:
    env = {"SSCARD_KEYSTORE_PASSPHRASE": env_pw} if env_pw else {"SSCARD_KEYSTORE_PASSPHRASE": ""}
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


@pytest.fixture
def centre(tmp_path: Path) -> Path:
    store = tmp_path / "centre.ks"
    scheme = tmp_path / "scheme.json"
    scheme.write_text(json.dumps(SCHEME))
    assert sscard("keys", "init", "--kdf-cost", "10", str(store)).exit_code == 0
    r = sscard("keys", "generate", str(store), "--scheme", str(scheme))
    assert r.exit_code == 0, r.output
    return store


def _values(store: Path, pw: str = PW) -> list[bytes]:
    return [e.value for e in SoftwareKeyStore.open(store, pw).entries()]


def test_generate_and_list_show_kcvs_never_values(centre: Path) -> None:
    r = sscard("--json", "keys", "list", str(centre))
    assert r.exit_code == 0
    listing = json.loads(r.output)
    assert {k["ref"] for k in listing["keys"]} == {"SSSE/MK/00", "SSSE/EAK/01", "MF/TK/00"}
    assert all(len(k["kcv"]) == 6 for k in listing["keys"])
    human = sscard("keys", "list", str(centre)).output
    for value in _values(centre):
        assert value.hex() not in r.output.lower() and value.hex() not in human.lower()


def test_local_json_flag_works_too(centre: Path) -> None:
    r = sscard("keys", "list", "--json", str(centre))
    assert json.loads(r.output)["kind"] == "root"


def test_wrong_passphrase_exit_6_and_file_unchanged(centre: Path) -> None:
    before = centre.read_bytes()
    r = sscard("keys", "rotate", str(centre), "SSSE/EAK/01", env_pw="not the passphrase")
    assert r.exit_code == 6
    assert "not the passphrase" not in r.output
    assert centre.read_bytes() == before


def test_bad_inputs_exit_7_and_change_nothing(centre: Path, tmp_path: Path) -> None:
    before = centre.read_bytes()
    scheme = tmp_path / "scheme.json"
    assert sscard("keys", "generate", str(centre), "--scheme", str(scheme)).exit_code == 7  # exists
    assert sscard("keys", "rotate", str(centre), "DF09/EAK/01").exit_code == 7  # unknown ref
    r = sscard("keys", "export-zone", str(centre), str(tmp_path / "z.ks"), "--city", "31")
    assert r.exit_code == 7
    (tmp_path / "bad.ks").write_bytes(b"SSCARDKS garbage")
    assert sscard("keys", "list", str(tmp_path / "bad.ks")).exit_code == 7
    assert centre.read_bytes() == before
    assert not (tmp_path / "z.ks").exists()


def test_rotate_adds_a_version_beside_the_old(centre: Path) -> None:
    r = sscard("--json", "keys", "rotate", str(centre), "SSSE/EAK/01")
    assert r.exit_code == 0 and json.loads(r.output)["version"] == 2
    assert SoftwareKeyStore.open(centre, PW).versions("SSSE/EAK/01") == [1, 2]


def test_export_zone_gives_a_service_point_the_same_cryptograms(
    centre: Path, tmp_path: Path
) -> None:
    zone = tmp_path / "pudong.ks"
    r = sscard(
        "--json", "keys", "export-zone", "--kdf-cost", "10", str(centre), str(zone),
        "--city", "310115", input="transport pw 22\ntransport pw 22\n",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    exported = json.loads(r.output[r.output.index("{") :])
    assert {k["ref"] for k in exported["keys"]} == {"SSSE/MK/00", "SSSE/EAK/01"}  # not TK
    zstore = SoftwareKeyStore.open(zone, "transport pw 22")
    assert zstore.kind == "zone" and all(e.depth == 2 for e in zstore.entries())
    roots = SoftwareKeyStore.open(centre, PW)
    root_values = {e.value for e in roots.entries()}
    assert not root_values & {e.value for e in zstore.entries()}
    at_centre = SoftwareSecurityModule(roots, city="310115")
    at_point = SoftwareSecurityModule(zstore)
    assert at_point.external_auth(SERIAL, "SSSE/EAK/01", R8) == at_centre.external_auth(
        SERIAL, "SSSE/EAK/01", R8
    )


def test_split_and_combine_dual_control(centre: Path, tmp_path: Path) -> None:
    out = tmp_path / "custodians"
    r = sscard(
        "--json", "keys", "split", "--kdf-cost", "10", str(centre), "SSSE/MK/00",
        "--parts", "2", "--out-dir", str(out),
        input="alice pass 1\nalice pass 1\nbob pass 22\nbob pass 22\n",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    result = json.loads(r.output[r.output.index("{") :])
    files = [Path(c["file"]) for c in result["components"]]
    assert len(files) == 2 and result["components"][0]["kcv"] != result["components"][1]["kcv"]
    mk = SoftwareKeyStore.open(centre, PW).get("SSSE/MK/00")
    for f in files:
        assert mk.value not in f.read_bytes()

    other = tmp_path / "other.ks"
    assert sscard("keys", "init", "--kdf-cost", "10", str(other)).exit_code == 0
    r = sscard(
        "--json",
        "keys",
        "combine",
        str(other),
        *map(str, files),
        input="alice pass 1\nbob pass 22\n",
    )
    assert r.exit_code == 0, r.output
    combined = json.loads(r.output[r.output.index("{") :])
    assert combined["kcv"] == result["kcv"] == mk.kcv.hex().upper()
    assert SoftwareKeyStore.open(other, PW).get("SSSE/MK/00").value == mk.value

    # a custodian's wrong passphrase: exit 6, nothing added
    third = tmp_path / "third.ks"
    assert sscard("keys", "init", "--kdf-cost", "10", str(third)).exit_code == 0
    r = sscard("keys", "combine", str(third), *map(str, files), input="alice pass 1\nmallory!!\n")
    assert r.exit_code == 6
    assert SoftwareKeyStore.open(third, PW).entries() == []


def test_passphrase_from_fd_never_argv(centre: Path) -> None:
    exe = str(Path(sys.executable).with_name("sscard"))
    read, write = os.pipe()
    os.write(write, (PW + "\n").encode())
    os.close(write)
    env = {k: v for k, v in os.environ.items() if k != "SSCARD_KEYSTORE_PASSPHRASE"}
    proc = subprocess.run(
        [exe, "--json", "keys", "list", "--passphrase-fd", str(read), str(centre)],
        capture_output=True, text=True, env=env, pass_fds=(read,), timeout=60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(read)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["keys"]) == 3


def test_help_has_examples() -> None:
    for cmd in ("init", "generate", "list", "split", "combine", "export-zone", "rotate"):
        r = sscard("keys", cmd, "--help")
        assert r.exit_code == 0 and "Examples:" in r.output and "--json" in r.output


def test_generate_from_a_shipped_profile(tmp_path: Path) -> None:
    store = tmp_path / "c.ks"
    assert sscard("keys", "init", "--kdf-cost", "10", str(store)).exit_code == 0
    r = sscard("--json", "keys", "generate", str(store), "--profile", "national-2")
    assert r.exit_code == 0, r.output
    from sscard.layout.loader import load_profile

    slots = load_profile("national-2").key_scheme.slots
    assert {k["ref"] for k in json.loads(r.output)} == {s.ref for s in slots}
    assert sscard("keys", "generate", str(store)).exit_code == 7  # neither --profile nor --scheme
