"""Every command the README shows in a shell block runs, or says plainly what it needs.

The README's ```sh blocks and its indented ``twitch-cds`` lines are read; each command is:

- **run** when it can run here: ``twitch-cds`` commands on the bundled files (exit 0, output
  checked), ``python -m twitch_cds...`` listings, and the local trial of the service
  (``twitch-cds serve --insecure-no-auth`` started on a free port, then the README's own
  ``curl`` line sent to it);
- **a synopsis** (``FILE|-``, ``[--lang id]``, placeholders in capitals): its subcommand and
  every option it names must be in that command's ``--help``;
- **an installation** (``python3 -m venv``, ``pip install``): not run here (minutes of
  compiling), but held to what a fresh machine needs: every ``pip install`` of the project
  carries the ``PyEval_CallObject`` define and names extras that exist, and the files named
  exist;
- **marked**: a comment on the line or just above it saying ``needs`` (a running service,
  credentials, your EHR's keys) — then its options are still checked against ``--help``;
- a long run (the suite itself, the whole mutation run, the long property profile): its
  options are checked against ``--help`` (the suite runs them elsewhere).

Anything else fails the test, naming the command.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
DEFINE = '-DPyEval_CallObject=PyObject_CallObject'


@dataclass(frozen=True)
class Command:
    text: str
    note: str  # the comment on its line, or on the comment line just above it

    @property
    def words(self) -> list[str]:
        return shlex.split(self.text)


def _commands() -> list[Command]:
    found: list[Command] = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        above = ""
        for line in block.replace("\\\n", " ").splitlines():
            stripped = line.strip()
            if not stripped:
                above = ""
                continue
            if stripped.startswith("#"):
                above = stripped
                continue
            command, _, comment = stripped.partition("  #")
            found.append(Command(command.strip(), f"{above} {comment}".strip()))
            above = ""
    for line in re.findall(r"^ {4}(twitch-cds .*)$", README, re.M):
        found.append(Command(line.strip(), ""))
    return found


COMMANDS = _commands()


@functools.cache
def _help(program: tuple[str, ...]) -> str:
    done = subprocess.run([*program, "--help"], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _options_are_documented(words: list[str]) -> None:
    """The command's options appear in its program's ``--help``."""
    if words[0] == "twitch-cds" and len(words) > 1 and not words[1].startswith("-"):
        program = [sys.executable, "-m", "twitch_cds.cli", words[1]]
    elif words[:2] == ["python", "-m"]:
        program = [sys.executable, "-m", words[2]]
    elif words[0] == "twitch-cds":
        program = [sys.executable, "-m", "twitch_cds.cli"]
    else:
        return
    text = _help(tuple(program))
    for word in words:
        option = word.strip("[]").split("=")[0]
        if option.startswith("--"):
            assert option in text, f"{' '.join(words)}: {option} is not in --help"


def _is_synopsis(command: Command) -> bool:
    return bool(re.search(r"\[--|\||\b[A-Z]{2,}\b", command.text)) and \
        command.text.startswith("twitch-cds")


def _run(command: Command) -> subprocess.CompletedProcess[str]:
    words = command.words
    if words[0] == "twitch-cds":
        words = [sys.executable, "-m", "twitch_cds.cli", *words[1:]]
    elif words[0] == "python":
        words = [sys.executable, *words[1:]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWITCH_CDS_")}
    return subprocess.run(words, capture_output=True, text=True, timeout=300, cwd=REPO,
                          env=env)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _installs(part: str) -> None:
    if "pip install" in part:
        assert DEFINE in part, f"{part}: every pip install of the project needs the define"
        assert "--no-cache-dir" in part, f"{part}: a cached wheel may lack the define"
        extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
            "optional-dependencies"])
        for named in re.findall(r"'\.\[(\w+)\]'", part):
            assert named in extras, f"{part}: no extra [{named}] in pyproject.toml"


LONG_RUNS = ("python -m pytest", "HYPOTHESIS_PROFILE=", "python -m twitch_cds.knowledge.mutate")


@pytest.mark.parametrize("command", COMMANDS, ids=[c.text[:60] for c in COMMANDS])
def test_every_readme_command_runs_or_says_what_it_needs(command: Command,
                                                         tmp_path: Path) -> None:
    text = command.text
    if "python3 -m venv" in text or text.startswith(("pip install", "CPPFLAGS=")):
        for part in text.split("&&"):
            _installs(part.strip())
            if part.strip().startswith("twitch-cds"):
                assert _run(Command(part.strip(), "")).returncode == 0, part
        return
    if text.startswith("cp "):
        source = command.words[1]
        assert (REPO / source).is_file(), f"{text}: {source} is not in the repository"
        return
    if _is_synopsis(command):
        _options_are_documented([w for w in command.words if w not in ("FILE|-",)])
        return
    if "needs" in command.note:
        _options_are_documented(command.words)
        return
    if text.startswith(LONG_RUNS) and "--list" not in text:
        words = command.words
        _options_are_documented(words[words.index("python"):] if "python" in words else words)
        return
    if text.startswith("twitch-cds serve") and "--insecure-no-auth" in text:
        return  # run with its curl line, in the test below
    if text.startswith("curl") and "127.0.0.1" in text:
        return  # the local trial, below
    done = _run(command)
    assert done.returncode == 0, f"{text}\n{done.stderr[-2000:]}"
    assert done.stdout.strip(), f"{text} printed nothing"


def test_the_local_trial_of_the_service_answers_cards() -> None:
    serve = next(c for c in COMMANDS if c.text.startswith("twitch-cds serve")
                 and "--insecure-no-auth" in c.text and not _is_synopsis(c))
    curl = next(c for c in COMMANDS if c.text.startswith("curl") and "127.0.0.1" in c.text)
    port = str(_free_port())
    words = [port if w == "8080" else w for w in serve.words]
    state = Path(os.environ.get("TMPDIR", "/tmp")) / f"twitch-cds-readme-{port}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TWITCH_CDS_")},
           "XDG_STATE_HOME": str(state)}
    process = subprocess.Popen([sys.executable, "-m", "twitch_cds.cli", *words[1:]], cwd=REPO,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.TransportError:
                if time.time() > deadline or process.poll() is not None:
                    process.kill()
                    pytest.fail(f"serve did not start: {process.communicate()[1][-2000:]}")
                time.sleep(0.2)
        assert shutil.which("curl"), "curl is needed for this README line"
        done = subprocess.run([w.replace("8080", port) for w in curl.words], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(state, ignore_errors=True)
    assert done.returncode == 0 and '"cards":[{' in done.stdout, done.stdout[:500]


def test_commands_are_found() -> None:
    texts = [c.text for c in COMMANDS]
    assert any(t.startswith("curl") for t in texts) and len(texts) > 10
