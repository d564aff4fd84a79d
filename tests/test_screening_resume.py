"""Population screening: interrupted runs resume without redoing finished work, byte for
byte; runs of other inputs are refused; shares of one file number lines as the file does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from twitch_cds.cli import main
from twitch_cds.screening import job, partition, resume, screen, worker
from twitch_cds.screening.parts import part_path, read_part_header
from twitch_cds.screening.resume import ResumeError

from .test_screening import NOW, population

OUTPUTS = ("worklist.csv", "responses.ndjson", "rejected.ndjson", "failed.ndjson",
           "group.json")


def _export(root: Path) -> Path:
    """An export with broken lines in the middle of a file, so resumed output includes
    rejections from partitioning and from buckets."""
    export = root / "export"
    population.generate(export, 300, seed=5, split=2, twitching=0.2)
    observations = export / "Observation.1.ndjson"
    lines = observations.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(50, '{"resourceType": "Observation", "id": "broken"\n')
    lines.insert(200, json.dumps({"resourceType": "Observation", "id": "orphan"}) + "\n")
    observations.write_text("".join(lines), encoding="utf-8")
    return export


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(tmp_path_factory.mktemp("resume"))


@pytest.fixture(scope="module")
def whole(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted serial run."""
    out = tmp_path_factory.mktemp("whole")
    screen(export, out, now=NOW, progress=False)
    return out


def _same(a: Path, b: Path) -> None:
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _fail_after(monkeypatch: pytest.MonkeyPatch, k: int) -> list[int]:
    """Make the k+1-th bucket evaluated in this process fail; the buckets run, in order."""
    real = worker.run_bucket
    ran: list[int] = []

    def flaky(task: worker.BucketTask, settings: worker.Settings) -> worker.BucketCounts:
        if len(ran) == k:
            raise KeyboardInterrupt("interrupted")
        ran.append(task.bucket)
        return real(task, settings)

    monkeypatch.setattr(worker, "run_bucket", flaky)
    return ran


def _evaluated(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The buckets evaluated (not read back from a finished part) in this process."""
    real = worker.run_bucket
    evaluated: list[int] = []

    def counting(task: worker.BucketTask, settings: worker.Settings) -> worker.BucketCounts:
        counts = real(task, settings)
        if not counts.resumed:
            evaluated.append(task.bucket)
        return counts

    monkeypatch.setattr(worker, "run_bucket", counting)
    return evaluated


def test_an_interrupted_run_resumes_where_it_stopped(export: Path, whole: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _fail_after(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        screen(export, tmp_path, now=NOW, progress=False)
    assert ran == [0, 1, 2, 3, 4]
    assert not (tmp_path / "summary.json").exists()
    work = tmp_path / resume.WORK
    assert sorted(p.name for p in (work / "parts").iterdir()) == [
        f"part-{b:04d}.tsv" for b in ran]  # the failing bucket left no part
    monkeypatch.undo()
    evaluated = _evaluated(monkeypatch)
    summary = screen(export, tmp_path, now=NOW, progress=False)
    assert summary.buckets_resumed == 5
    assert evaluated == list(range(5, summary.buckets))  # finished buckets not redone
    _same(tmp_path, whole)
    expected = json.loads((whole / "summary.json").read_text())
    got = json.loads((tmp_path / "summary.json").read_text())
    for key in ("patients_read", "resources_read", "patients_flagged", "lines_rejected",
                "patients_by_card_kind", "patients_by_indicator", "lines_read"):
        assert got[key] == expected[key], key
    assert not work.exists()  # removed once the summary is written


def test_a_run_killed_midway_resumes_on_processes(export: Path, whole: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL in the middle of bucket 4 (no clean-up runs), then resume with two worker
    processes: the parts written before the kill are kept as they are."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        from twitch_cds.screening import screen, worker
        real, seen = worker.run_bucket, []
        def killing(task, settings):
            seen.append(task.bucket)
            if len(seen) == 4:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(task, settings)
        worker.run_bucket = killing
        screen(sys.argv[1], sys.argv[2], now={NOW!r}, progress=False)
    """)
    done = subprocess.run([sys.executable, "-c", script, str(export), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    work = tmp_path / resume.WORK
    before = {b: read_part_header(part_path(work, b)) for b in range(3)}
    assert all(h is not None and h["pid"] != os.getpid() for h in before.values())
    assert read_part_header(part_path(work, 3)) is None
    monkeypatch.setattr(job, "SERIAL_BELOW_BYTES", 0)
    monkeypatch.setattr(job, "finished", lambda work: None)  # keep the parts to look at
    summary = screen(export, tmp_path, now=NOW, workers=2, progress=False)
    assert summary.engine == "processes" and summary.buckets_resumed == 3
    assert {b: read_part_header(part_path(work, b)) for b in range(3)} == before
    _same(tmp_path, whole)


def test_a_run_of_other_inputs_is_refused_then_restarted(
        export: Path, whole: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        screen(export, tmp_path, now=NOW, progress=False)
    monkeypatch.undo()
    with pytest.raises(ResumeError, match="now differ"):
        screen(export, tmp_path, now="2026-11-25T09:00:00Z", progress=False)
    with pytest.raises(ResumeError, match="parameters differ"):
        screen(export, tmp_path, now=NOW, parameters={"chronic_twitching_days": 14},
               progress=False)
    code = main(["screen", str(export), "--out", str(tmp_path), "--lang", "id", "--now", NOW])
    assert code == 2  # the command says why and stops
    # without --now, a resumed run keeps the clock of the run it resumes
    assert screen(export, tmp_path, progress=False).buckets_resumed == 2
    _same(tmp_path, whole)


def test_restart_discards_an_unfinished_run(export: Path, whole: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        screen(export, tmp_path, now=NOW, progress=False)
    monkeypatch.undo()
    evaluated = _evaluated(monkeypatch)
    code = main(["screen", str(export), "--out", str(tmp_path), "--now", NOW, "--restart"])
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["buckets_resumed"] == 0 and len(evaluated) == summary["buckets"]
    _same(tmp_path, whole)


def test_a_changed_input_file_is_not_mixed(export: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    copy = _export(tmp_path / "copy")
    _fail_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        screen(copy, tmp_path / "out", now=NOW, progress=False)
    monkeypatch.undo()
    with open(copy / "Condition.0.ndjson", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"resourceType": "Patient", "id": "late"}) + "\n")
    with pytest.raises(ResumeError, match="files differ"):
        screen(copy, tmp_path / "out", now=NOW, progress=False)


def test_shares_of_one_file_number_lines_as_the_file_does(
        export: Path, whole: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partition, "SHARE_BYTES", 4096)  # every file in many byte ranges
    monkeypatch.setattr(partition, "WRITE_BUFFERS", 1024)  # appended to buckets line by line
    assert len(partition.plan_shares(sorted(export.glob("*.ndjson")))) > 50
    summary = screen(export, tmp_path, now=NOW, progress=False)
    _same(tmp_path, whole)
    rejected = [json.loads(line) for line in
                (tmp_path / "rejected.ndjson").read_text().splitlines()]
    assert [(Path(r["file"]).name, r["line"]) for r in rejected] == [
        ("Observation.1.ndjson", 51), ("Observation.1.ndjson", 201)]
    assert summary.lines_rejected == 2


def test_a_share_reads_the_lines_that_start_in_its_range(tmp_path: Path) -> None:
    path = tmp_path / "x.ndjson"
    lines = [b"a" * n + b"\n" for n in (3, 0, 7, 1, 12, 5)]
    path.write_bytes(b"".join(lines))
    size = path.stat().st_size
    for cut in range(size + 1):
        first = partition.Share(0, 0, 0, cut or None) if cut else None
        second = partition.Share(1, 0, cut, None)
        got: list[Any] = [*(partition._share_lines(path, first) if first else []),
                          *partition._share_lines(path, second)]
        assert got == lines, cut


def test_a_run_stopped_while_partitioning_keeps_its_finished_shares(
        export: Path, whole: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = partition.partition_share
    calls: list[tuple[int, bool]] = []
    stop = [True]

    def stopping(share: partition.Share, **kwargs: Any) -> partition.ShareDone:
        finished = partition.read_done(partition.share_dir(kwargs["work"], share.index))
        calls.append((share.index, finished is not None))
        if len(calls) == 3 and stop.pop():
            raise KeyboardInterrupt("interrupted")
        return real(share, **kwargs)

    monkeypatch.setattr(job, "partition_share", stopping)
    with pytest.raises(KeyboardInterrupt):
        screen(export, tmp_path, now=NOW, progress=False)
    assert calls == [(0, False), (1, False), (2, False)]
    calls.clear()
    stop.append(False)
    summary = screen(export, tmp_path, now=NOW, progress=False)
    assert calls[:3] == [(0, True), (1, True), (2, False)]  # two shares were not redone
    assert all(not done for _, done in calls[2:])
    assert summary.buckets_resumed == 0
    _same(tmp_path, whole)
