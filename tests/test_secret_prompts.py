"""Secrets are never read through an echoing fallback; a failed own-password change is audited."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sscard.applets.factory import new_card_file
from sscard.cli.exit_codes import ExitCode
from sscard.cli.main import cli
from tests.cardkit import issue
from tests.operatorkit import PASSWORD, Installation, audit_records

SSCARD = str(Path(sys.executable).with_name("sscard"))
SECRET = "typed secret 9"


def test_failed_own_password_change_is_audited_like_a_failed_login(
    installation: Installation,
) -> None:
    installation.login("zhang", "service")
    r = CliRunner().invoke(
        cli, ["operator", "passwd", "--kdf-cost", "10"],
        input="not my password\nnew password 2\nnew password 2\n",
    )  # fmt: skip
    assert r.exit_code == ExitCode.AUTH, r.output
    assert [
        (x.operator, x.role, x.outcome, x.error) for x in audit_records("operator.passwd.own")
    ] == [("zhang", "service", "refused", "LoginFailed")]
    # an unknown id is recorded without it (a mistyped id may be a password)
    assert CliRunner().invoke(cli, ["operator", "logout"]).exit_code == 0
    r = CliRunner().invoke(
        cli, ["operator", "passwd", "no-such-operator", "--kdf-cost", "10"],
        input="whatever 1\n",
    )  # fmt: skip
    assert r.exit_code == ExitCode.AUTH
    last = audit_records("operator.passwd.own")[-1]
    assert (last.operator, last.outcome, last.error) == (None, "refused", "LoginFailed")
    assert "no-such-operator" not in installation.store.read_bytes().decode("latin-1")
    # the right password still works afterwards
    installation.login("zhang", "service")
    r = CliRunner().invoke(
        cli, ["operator", "passwd", "--kdf-cost", "10"],
        input=f"{PASSWORD}\nnew password 2\nnew password 2\n",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert [x.outcome for x in audit_records("operator.passwd.own")] == ["refused", "refused", "ok"]
    assert "not my password" not in installation.store.read_bytes().decode("latin-1")


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["operator", "login", "admin"], "--password-fd"),
        (["operator", "passwd", "admin"], "at a terminal"),
        (["operator", "passwd", "zhang"], "--password-fd"),
        (["operator", "add", "zhang", "--name", "Z"], "--password-fd"),
        (["operator", "list", "--operator", "admin"], "sscard operator login"),
        (["keys", "init", "--kdf-cost", "10", "{tmp}/c.ks"], "--passphrase-fd"),
        (["backup", "create", "{tmp}/bak"], "--passphrase-fd"),
        # a card in the reader (one without a PIN pad): the PIN prompt comes after the
        # reader is asked whether it has a pad
        (["-r", "virtual:{tmp}/card.img", "pin", "verify"], "--pin-stdin"),
        (["keys", "token-list", "--token", "t"], "--pin-fd"),
    ],
)
def test_no_terminal_means_no_prompt_not_an_echoing_read(
    installation: Installation, tmp_path: Path, args: list[str], hint: str
) -> None:
    """Without a controlling terminal getpass would read stdin with echo: refused instead."""
    installation.login("admin", "issuer")
    installation.add("zhang", "service")
    token = installation.token.read_bytes()
    if any("card.img" in a for a in args):
        issue(new_card_file(tmp_path / "card.img"), "national-3")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SSCARD_KEYSTORE_PASSPHRASE", "SSCARD_BACKUP_PASSPHRASE", "SSCARD_TOKEN_PIN")
    }
    r = subprocess.run(
        [SSCARD, *(a.replace("{tmp}", str(tmp_path)) for a in args)],
        input=f"{SECRET}\n{SECRET}\n{SECRET}\n",
        capture_output=True, text=True, env=env, timeout=60,
        start_new_session=True,  # no controlling terminal: /dev/tty cannot be opened
    )  # fmt: skip
    assert r.returncode == ExitCode.INVALID_INPUT, (r.returncode, r.stderr)
    assert hint in r.stderr
    assert "GetPassWarning" not in r.stderr and "echoed" not in r.stderr
    assert SECRET not in r.stdout + r.stderr
    assert installation.token.read_bytes() == token  # no new session
    assert not (tmp_path / "c.ks").exists() and not (tmp_path / "bak").exists()
    assert [x.outcome for x in audit_records("operator.login")] == ["ok"]  # the one above
