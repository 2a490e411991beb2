"""``sscard operator`` and the operator check on key commands, through real subprocesses
where it matters (art. 15: identity authentication, access permissions; refusals exit 6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from sscard.cli.main import cli
from tests.operatorkit import PASSWORD, Installation, audit_records

EXE = str(Path(sys.executable).with_name("sscard"))
KS_PW = "centre passphrase 1"


def run(*args: str, input: str | None = None) -> Result:
    env = {"SSCARD_KEYSTORE_PASSPHRASE": KS_PW}
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


def sub(*args: str, secret: str | None = None) -> subprocess.CompletedProcess[str]:
    """``sscard ARGS`` in a subprocess; ``secret`` goes through a pipe ("FD" in ARGS)."""
    fds: tuple[int, ...] = ()
    if secret is not None:
        r, w = os.pipe()
        os.write(w, (secret + "\n").encode())
        os.close(w)
        fds = (r,)
        args = tuple(str(r) if a == "FD" else a for a in args)
    env = {**os.environ, "SSCARD_KEYSTORE_PASSPHRASE": KS_PW}
    try:
        return subprocess.run(
            [EXE, *args], capture_output=True, text=True, env=env, pass_fds=fds, timeout=60,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        for fd in fds:
            os.close(fd)


def test_bootstrap_login_and_a_0600_token_in_real_processes(installation: Installation) -> None:
    r = sub("operator", "add", "--bootstrap", "admin", "--name", "Li Na", "--kdf-cost", "10",
            "--password-fd", "FD", secret=PASSWORD)  # fmt: skip
    assert r.returncode == 0, r.stderr
    again = sub("operator", "add", "--bootstrap", "mallory", "--name", "M", "--kdf-cost", "10",
                "--password-fd", "FD", secret=PASSWORD)  # fmt: skip
    assert again.returncode == 6 and "already has operators" in again.stderr
    r = sub("--json", "operator", "login", "admin", "--password-fd", "FD", secret=PASSWORD)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["role"] == "issuer"
    assert oct(installation.token.stat().st_mode & 0o777) == "0o600"
    r = sub("--json", "operator", "whoami")
    assert r.returncode == 0 and json.loads(r.stdout)["id"] == "admin"
    assert "keys.generate" in json.loads(r.stdout)["actions"]
    assert sub("operator", "logout").returncode == 0
    r = sub("operator", "whoami")
    assert r.returncode == 6 and "sscard operator login" in r.stderr
    for out in (r.stdout, r.stderr):
        assert PASSWORD not in out
    assert [x.outcome for x in audit_records("operator.bootstrap")] == ["ok", "refused"]
    assert [x.action for x in audit_records("operator")] == [
        "operator.bootstrap", "operator.bootstrap", "operator.login", "operator.logout",
    ]  # fmt: skip


def test_service_operator_cannot_generate_keys(installation: Installation, tmp_path: Path) -> None:
    installation.login("admin", "issuer")
    store = tmp_path / "centre.ks"
    assert run("keys", "init", "--kdf-cost", "10", str(store)).exit_code == 0
    before = store.read_bytes()
    installation.login("zhang", "service")
    r = sub("--json", "keys", "generate", str(store), "--profile", "national-3")
    assert r.returncode == 6
    err = json.loads(r.stderr)
    assert err["error"] == "NotAuthorized" and "keys.generate" in err["message"]
    assert store.read_bytes() == before
    recs = audit_records("keys.generate")
    assert [(x.operator, x.role, x.outcome, x.error) for x in recs] == [
        ("zhang", "service", "refused", "NotAuthorized")
    ]
    (init,) = audit_records("keys.init")
    assert (init.operator, init.outcome) == ("admin", "ok")


def test_every_key_store_command_needs_an_issuer(
    installation: Installation, tmp_path: Path
) -> None:
    installation.add("admin", "issuer")
    installation.login("audit-1", "auditor")
    s = str(tmp_path / "x.ks")
    commands = [
        ["keys", "init", s],
        ["keys", "generate", s, "--profile", "national-3"],
        ["keys", "rotate", s, "SSSE/EAK/01"],
        ["keys", "split", s, "SSSE/MK/00", "--out-dir", str(tmp_path)],
        ["keys", "combine", s, s, s],
        ["keys", "export-zone", s, s + "2", "--city", "310115"],
        ["keys", "token-import", s, "--token", "t"],
    ]
    (tmp_path / "x.ks").write_bytes(b"placeholder")
    for cmd in commands:
        r = run(*cmd)
        assert r.exit_code == 6, (cmd, r.output)
    refused = [x.action for x in audit_records("keys") if x.outcome == "refused"]
    assert refused == [
        "keys.init", "keys.generate", "keys.rotate", "keys.split", "keys.combine",
        "keys.export-zone", "keys.token-import",
    ]  # fmt: skip


def test_operator_flag_prompts_for_the_password(installation: Installation, tmp_path: Path) -> None:
    installation.add("admin", "issuer")
    store = tmp_path / "c.ks"
    r = run("keys", "init", "--kdf-cost", "10", "--operator", "admin", str(store), input="nope\n")
    assert r.exit_code == 6 and not store.exists()
    r = run("keys", "init", "--kdf-cost", "10", "--operator", "admin", str(store),
            input=PASSWORD + "\n")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert PASSWORD not in r.output
    assert [(x.operator, x.outcome, x.error) for x in audit_records("keys.init")] == [
        ("admin", "refused", "LoginFailed"),
        ("admin", "ok", None),
    ]


def test_failed_key_commands_are_audited_with_their_error_class(
    installation: Installation, tmp_path: Path
) -> None:
    installation.login("admin", "issuer")
    store = tmp_path / "c.ks"
    assert run("keys", "init", "--kdf-cost", "10", str(store)).exit_code == 0
    r = CliRunner().invoke(
        cli, ["keys", "rotate", str(store), "SSSE/EAK/01"],
        env={"SSCARD_KEYSTORE_PASSPHRASE": "not the passphrase"},
    )  # fmt: skip
    assert r.exit_code == 6
    (rec,) = audit_records("keys.rotate")
    assert (rec.outcome, rec.error) == ("failed", "WrongPassphrase")
    assert "not the passphrase" not in installation.store.read_bytes().decode("latin-1")


def test_operator_management_needs_an_issuer(installation: Installation) -> None:
    installation.add("admin", "issuer")
    installation.login("zhang", "service")
    r = run("operator", "add", "kiosk-1", "--name", "K", "--role", "kiosk",
            input="kiosk pass 1\nkiosk pass 1\n")  # fmt: skip
    assert r.exit_code == 6
    assert run("operator", "list").exit_code == 6
    assert run("operator", "disable", "admin").exit_code == 6
    installation.login("admin", "issuer")
    r = run("operator", "add", "kiosk-1", "--name", "Kiosk 1", "--role", "kiosk", "--kdf-cost",
            "10", input="kiosk pass 1\nkiosk pass 1\n")  # fmt: skip
    assert r.exit_code == 0, r.output
    listing = json.loads(run("--json", "operator", "list").output)
    assert {o["id"]: o["role"] for o in listing} == {
        "admin": "issuer", "kiosk-1": "kiosk", "zhang": "service",
    }  # fmt: skip
    assert all("credential" not in o for o in listing)
    assert run("operator", "disable", "zhang").exit_code == 0
    r = run("operator", "login", "zhang", input=PASSWORD + "\n")
    assert r.exit_code == 6


def test_passwd_own_and_by_an_issuer(installation: Installation) -> None:
    installation.login("zhang", "service")
    r = run("operator", "passwd", "--kdf-cost", "10",
            input=f"{PASSWORD}\nnew password 2\nnew password 2\n")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert run("operator", "login", "zhang", input=PASSWORD + "\n").exit_code == 6
    assert run("operator", "login", "zhang", input="new password 2\n").exit_code == 0
    # a service operator cannot reset someone else's password
    installation.add("admin", "issuer")
    r = run("operator", "passwd", "admin", "--kdf-cost", "10", input="x\n")
    assert r.exit_code in (6,), r.output
    installation.login("admin", "issuer")
    r = run("operator", "passwd", "zhang", "--kdf-cost", "10",
            input="reset password 3\nreset password 3\n")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert run("operator", "login", "zhang", input="reset password 3\n").exit_code == 0


def test_help_has_examples() -> None:
    for cmd in ("add", "list", "disable", "passwd", "login", "logout", "whoami"):
        r = run("operator", cmd, "--help")
        assert r.exit_code == 0 and "Examples:" in r.output
