"""Progress of ``twitch-cds screen``: a tqdm bar with patients/s and an estimate on a
terminal (a pseudo-terminal here), plain periodic log lines when stderr is not one."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .test_screening import NOW, population

pytest.importorskip("tqdm")

COMMAND = textwrap.dedent("""
    import sys
    from twitch_cds.cli import main
    from twitch_cds.screening import progress
    progress.LOG_EVERY_SECONDS = 0.0  # a line per bucket, so that a small export shows several
    raise SystemExit(main(["screen", sys.argv[1], "--out", sys.argv[2], "--now", sys.argv[3]]))
""")


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("progress")
    population.generate(out, 200, seed=9, split=2)
    return out


def _on_a_terminal(args: list[str]) -> str:
    """Run the command with a pseudo-terminal as its stdin, stdout and stderr."""
    master, slave = pty.openpty()
    # the terminal's size is left at 0 x 0, as a fresh pseudo-terminal reports it
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    child = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert child.wait(timeout=120) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode("utf-8", errors="replace")


def test_a_terminal_gets_a_bar_with_patients_per_second_and_an_estimate(
        export: Path, tmp_path: Path) -> None:
    shown = _on_a_terminal([sys.executable, "-c", COMMAND, str(export), str(tmp_path), NOW])
    assert "\r" in shown  # the bar is redrawn in place
    assert re.search(r"screening: 100%\|[^|]*\| (\d+)/\1 ", shown), shown
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d", shown)  # elapsed < estimate left
    assert re.search(r"200 patients, [\d,]+ patients/s", shown)
    assert "screened " not in shown  # no log lines while a bar is drawn
    assert (tmp_path / "summary.json").exists()


def test_without_a_terminal_plain_lines_are_logged(export: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", COMMAND, str(export), str(tmp_path), NOW],
                          capture_output=True, text=True, timeout=120, check=True)
    lines = re.findall(r"screened (\d+)/(\d+) buckets, (\d+) patients, [\d,]+ patients/s",
                       done.stderr)
    assert len(lines) >= 2, done.stderr
    assert [int(n) for n, _, _ in lines] == list(range(1, len(lines) + 1))
    assert lines[-1][0] == lines[-1][1] and lines[-1][2] == "200"
    assert "\r" not in done.stderr and "%|" not in done.stderr  # no bar drawn
