"""``sscard agent serve`` as a process on a card served through pcscd (docs/agent.md):
httpx reads the basic information; the Java client example of docs/agent.md, run
with ``java Example.java`` (JDK's HttpClient, a client we did not write), prints
the national pipe line; a PIN posted never appears on the server's stderr."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sscard.applets.pcsc_rig import served_card
from sscard.cli.exit_codes import ExitCode
from tests.cardkit import PIN, SAMPLE_HOLDER
from tests.operatorkit import env_for

ROOT = Path(__file__).resolve().parent.parent
JAVA = shutil.which("java") or "/usr/bin/java"
MCS = shutil.which("mcs") or "/usr/bin/mcs"  # Debian's mono-mcs (scripts/install-system-deps.sh)
MONO = shutil.which("mono") or "/usr/bin/mono"
SSCARD = str(Path(sys.executable).with_name("sscard"))


@dataclass
class Agent:
    url: str
    token: str
    proc: subprocess.Popen[str]
    stderr: list[str]


@pytest.fixture
def agent(card_file: Path, vpcd_port: int, tmp_path: Path) -> Iterator[Agent]:
    """``sscard agent serve --port 0`` on the served card (development keys: an emulated
    card), the access log on stderr at debug level."""
    env = {**os.environ, "SSCARD_DATA_DIR": str(tmp_path / "data"), "SSCARD_LANG": "en"}
    env.pop("SSCARD_KEYSTORE", None)
    token = subprocess.run(
        [SSCARD, "agent", "token"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    with served_card(card_file, vpcd_port) as reader:
        proc = subprocess.Popen(
            [SSCARD, "--log-level", "debug", "-r", reader, "agent", "serve", "--port", "0",
             "--keystore", "dev", "--service-point", "sp-test"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        stderr: list[str] = []
        reading = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
        reading.start()
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            found = re.search(r"http://127\.0\.0\.1:\d+", line)
            assert found, (line, "".join(stderr))
            yield Agent(found.group(0), token, proc, stderr)
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(20) == 0
            reading.join(5)


def test_agent_serve_reads_the_card_over_http(agent: Agent) -> None:
    auth = {"Authorization": f"Bearer {agent.token}"}
    with httpx.Client(base_url=agent.url, headers=auth, timeout=30) as http:
        assert http.get("/api/health").json()["code"] == 0
        status = http.get("/api/status").json()["data"]
        assert status["card_present"] is True and status["reader"].startswith("Virtual PCD")
        answer = http.post("/api/iReadCardBas", json={"type": 1}).json()
        assert answer["code"] == 0, answer
        assert answer["data"]["name"] == SAMPLE_HOLDER["name"]
        assert answer["data"]["line"].split("|")[4] == SAMPLE_HOLDER["name"]
        assert http.post("/api/iVerifyPIN", json={"pin": PIN}).json()["code"] == 0
        wrong = http.post("/api/iVerifyPIN", json={"pin": "000000"}).json()
        assert wrong["code"] == -51 and wrong["tries_left"] == 5
        assert http.post("/api/iVerifyPIN", json={"pin": PIN}).json()["code"] == 0
        assert httpx.get(agent.url + "/api/status").status_code == 401
    agent.proc.send_signal(signal.SIGINT)
    agent.proc.wait(20)
    text = "".join(agent.stderr)
    assert "POST /api/iVerifyPIN 200" in text, text
    assert PIN not in text and "000000" not in text and agent.token not in text
    assert "Traceback" not in text


def _example(language: str) -> str:
    doc = (ROOT / "docs" / "agent.md").read_text(encoding="utf-8")
    blocks = re.findall(rf"```{language}\n(.*?)```", doc, flags=re.S)
    assert len(blocks) == 1
    return str(blocks[0])


def _client_agrees(agent: Agent, command: list[str], cwd: Path) -> None:
    """``command`` (a client example) prints the card's name and national line as the API
    answers them; with a wrong token it exits 1 and prints the refusal's code."""
    env = {**os.environ, "SSCARD_AGENT_URL": agent.url, "SSCARD_AGENT_TOKEN": agent.token}
    done = subprocess.run(command, env=env, capture_output=True, timeout=180, cwd=cwd)
    out = done.stdout.decode("utf-8")
    assert done.returncode == 0, (out, done.stderr.decode("utf-8", "replace"))
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert lines["name"] == SAMPLE_HOLDER["name"]
    fields = lines["line"].split("|")
    assert len(fields) == 12 and fields[0] == SAMPLE_HOLDER["region"]
    assert fields[4] == SAMPLE_HOLDER["name"]
    with httpx.Client(base_url=agent.url, timeout=30) as http:
        direct = http.post(
            "/api/iReadCardBas", json={}, headers={"Authorization": f"Bearer {agent.token}"}
        ).json()
    assert lines["line"] == direct["data"]["line"]
    env["SSCARD_AGENT_TOKEN"] = "wrong"
    refused = subprocess.run(command, env=env, capture_output=True, timeout=180, cwd=cwd)
    assert refused.returncode == 1
    assert "error -27010" in refused.stdout.decode("utf-8")


def test_the_java_example_of_the_docs_reads_the_card(agent: Agent, tmp_path: Path) -> None:
    """The Java example, run by the JDK's single-file launcher on java.net.http."""
    source = tmp_path / "Example.java"
    source.write_text(_example("java"), encoding="utf-8")
    _client_agrees(agent, [JAVA, str(source)], tmp_path)


def test_the_csharp_example_of_the_docs_reads_the_card(agent: Agent, tmp_path: Path) -> None:
    """The C# example, compiled by Mono's C# compiler and run on Mono's HttpClient."""
    source = tmp_path / "Example.cs"
    source.write_text(_example("csharp"), encoding="utf-8")
    program = tmp_path / "Example.exe"
    built = subprocess.run(
        [MCS, "-r:System.Net.Http.dll", f"-out:{program}", str(source)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    _client_agrees(agent, [MONO, str(program)], tmp_path)


def test_serve_kiosk_needs_an_operator_with_the_kiosk_role(card_file: Path) -> None:
    """``--kiosk`` is refused (exit 6, audited) for a service operator, like ``sscard kiosk``;
    for a kiosk operator the agent serves the page and its Chinese texts."""
    argv = [SSCARD, "-r", f"virtual:{card_file}", "agent", "serve", "--kiosk", "--port", "0"]
    refused = subprocess.run(
        argv, env=env_for("service"), capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == ExitCode.AUTH, refused.stderr
    assert "pin.change" in refused.stderr and "Traceback" not in refused.stderr
    proc = subprocess.Popen(
        argv, env=env_for("kiosk"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        found = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
        assert found
        page = httpx.get(found.group(0) + "/kiosk/", timeout=30)
        assert page.status_code == 200 and "kiosk.js" in page.text
        assert page.headers["cache-control"] == "no-store"
        texts = httpx.get(found.group(0) + "/kiosk/texts?lang=zh_CN", timeout=30).json()
        assert texts["screen"]["insert"] == "请插入您的社会保障卡。"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
