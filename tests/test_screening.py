"""Population screening: a generated Bulk export through ``screen()`` and ``evaluate_many``."""

from __future__ import annotations

import csv
import gzip
import importlib
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import twitch_cds
from twitch_cds.cli import main
from twitch_cds.screening import evaluate_many, job, screen
from twitch_cds.screening.gate import CardGate

NOW = "2026-11-24T09:00:00Z"
_spec = importlib.util.spec_from_file_location(
    "population", Path(__file__).resolve().parent.parent / "benchmarks" / "population.py")
assert _spec and _spec.loader
population = importlib.util.module_from_spec(_spec)
sys.modules["population"] = population
_spec.loader.exec_module(population)


def _resources(export: Path) -> dict[str, list[dict[str, Any]]]:
    """Every patient's resources, read naively (the oracle for the grouping)."""
    manifest = json.loads((export / "manifest.json").read_text())
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest["output"]:
        path = export / entry["url"]
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                resource = json.loads(line)
                pid = (resource["id"] if resource["resourceType"] == "Patient"
                       else resource["subject"]["reference"].split("/")[1])
                groups.setdefault(pid, []).append(resource)
    return groups


def _responses(out: Path) -> dict[str, dict[str, Any]]:
    with open(out / "responses.ndjson", encoding="utf-8") as handle:
        return {r["patient"]: r for r in map(json.loads, handle)}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    population.generate(out, 400, seed=7, split=2, twitching=0.15)
    return out


@pytest.fixture(scope="module")
def serial(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serial")
    screen(export / "manifest.json", out, now=NOW, progress=False)
    return out


def test_every_patient_gets_the_cards_evaluate_gives(export: Path, serial: Path) -> None:
    responses = _responses(serial)
    groups = _resources(export)
    with_cards = set()
    for pid, resources in groups.items():
        expected = twitch_cds.evaluate(resources, now=NOW)
        if expected.cards:
            with_cards.add(pid)
            got = responses[pid]["response"]["cards"]
            assert [c["uuid"] for c in got] == [str(c.uuid) for c in expected.cards]
            assert [c["source"]["topic"]["code"] for c in got] == [c.kind for c in
                                                                   expected.cards]
            assert responses[pid]["evidence"] == expected.evidence
    assert with_cards == set(responses)  # the gate skipped no patient with a card
    assert 30 < len(with_cards) < 120
    summary = json.loads((serial / "summary.json").read_text())
    assert summary["patients_read"] == 400
    assert summary["resources_read"] == sum(map(len, groups.values()))
    assert summary["patients_flagged"] == len(with_cards)
    assert summary["patients_evaluated"] < 400 / 2  # the rest cost a gate check only


def test_twitching_with_weakness_is_critical_and_first(export: Path, serial: Path) -> None:
    groups = _resources(export)
    weak = {pid for pid, rs in groups.items()
            if any(r["id"].endswith("-tw") for r in rs)
            and any(r["id"].endswith("-muscle-weakness") for r in rs)}
    assert weak
    with open(serial / "worklist.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    by_patient = {r["patient"]: r for r in rows}
    for pid in weak:
        assert by_patient[pid]["indicator"] == "critical"
        assert "red-flag" in by_patient[pid]["kinds"]
        assert f"Observation/{pid}-muscle-weakness" in by_patient[pid]["references"]
    indicators = [r["indicator"] for r in rows]
    assert indicators == sorted(indicators, key=["critical", "warning", "info"].index)
    group = json.loads((serial / "group.json").read_text())
    assert group["resourceType"] == "Group" and group["quantity"] == len(rows)
    assert [m["entity"]["reference"] for m in group["member"]] == [
        f"Patient/{r['patient']}" for r in rows]


def test_serial_equals_two_processes(export: Path, serial: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job, "SERIAL_BELOW_BYTES", 0)  # this small export on processes too
    summary = screen(export, tmp_path, now=NOW, workers=2, progress=False)
    assert summary.workers == 2 and summary.engine == "processes"
    for name in ("worklist.csv", "responses.ndjson", "rejected.ndjson", "group.json"):
        assert (tmp_path / name).read_bytes() == (serial / name).read_bytes()


def test_bad_lines_are_reported_and_the_rest_screened(tmp_path: Path) -> None:
    export = tmp_path / "export"
    population.generate(export, 60, seed=3, twitching=0.5)
    observations = export / "Observation.0.ndjson"
    with open(observations, "a", encoding="utf-8") as handle:
        handle.write('{"resourceType": "Observation", "id": "broken"\n')
        handle.write(json.dumps({"resourceType": "Observation", "id": "orphan",
                                 "status": "final", "code": {"text": "x"}}) + "\n")
    lines = observations.read_text().count("\n")
    # a gzip that ends early: half a compressed file of three good lines
    good = [json.dumps({"resourceType": "Patient", "id": f"gz{i}"}) for i in range(3)]
    packed = gzip.compress(("\n".join(good * 400) + "\n").encode())
    (export / "Extra.ndjson.gz").write_bytes(packed[: len(packed) // 2])
    (export / "manifest.json").unlink()  # a directory of files, no manifest
    out = tmp_path / "out"
    summary = screen(export, out, now=NOW, progress=False)
    rejected = [json.loads(line) for line in (out / "rejected.ndjson").read_text().splitlines()]
    where = {(Path(r["file"]).name, r["line"]): r["problem"] for r in rejected}
    assert "not JSON" in where[("Observation.0.ndjson", lines - 1)]
    assert "without a patient" in where[("Observation.0.ndjson", lines)]
    truncated = [r for r in rejected if r["file"].endswith("Extra.ndjson.gz")]
    assert len(truncated) == 1 and "rest skipped" in truncated[0]["problem"]
    assert truncated[0]["line"] > 1
    assert summary.lines_rejected == 3
    assert summary.patients_read >= 60
    assert summary.patients_flagged > 10


def test_a_failing_patient_is_reported_and_the_rest_go_on(
        monkeypatch: pytest.MonkeyPatch, export: Path) -> None:
    module = importlib.import_module("twitch_cds.screening.evaluate_many")

    real = module.evaluate

    def flaky(resources: list[dict[str, Any]], **kwargs: Any) -> Any:
        if any(r["resourceType"] == "Patient" and r["id"] == "bad" for r in resources):
            raise RuntimeError("engine failed")
        return real(resources, **kwargs)

    monkeypatch.setattr(module, "evaluate", flaky)
    groups = _resources(export)
    flagged = next(pid for pid, rs in groups.items() if any(r["id"].endswith("-tw")
                                                           for r in rs))
    bad = [{"resourceType": "Patient", "id": "bad"}, *groups[flagged][1:]]

    def pairs() -> Iterator[tuple[str, list[dict[str, Any]]]]:
        yield "bad", bad
        yield flagged, groups[flagged]

    results = list(evaluate_many(pairs(), now=NOW))
    assert results[0].error == "RuntimeError: engine failed" and not results[0].cards
    assert results[1].error is None and results[1].cards


def test_the_gate_comes_from_the_rules() -> None:
    gate = CardGate(twitch_cds.load_knowledge())
    assert "twitching" in gate.gate_concepts
    assert not gate.could_card([{"resourceType": "Observation", "code": {"coding": [
        {"system": "http://loinc.org", "code": "2823-3"}]}, "valueQuantity": {"value": 2.5}}])


def test_the_command(export: Path, tmp_path: Path) -> None:
    code = main(["screen", str(export / "manifest.json"), "--out", str(tmp_path), "--now", NOW,
                 "--format", "ndjson", "--lang", "id", "--param", "chronic_twitching_days=14"])
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "worklist.ndjson").read_text().splitlines()]
    assert rows and rows[0]["indicator"] == "critical"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["patients_read"] == 400


def test_the_raw_gate_reads_codes_as_the_terminology_does() -> None:
    gate = CardGate(twitch_cds.load_knowledge())
    undotted = json.dumps({"resourceType": "Condition", "subject": {"reference": "Patient/a"},
                           "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm",
                                                "code": " r253 "}]}})
    assert gate.may_card_raw([undotted.encode()])
    assert gate.could_card([json.loads(undotted)])
    escaped = b'{"code": {"coding": [{"code": "\\u0052253"}]}}'
    assert gate.may_card_raw([escaped])  # an escape is never trusted to hide a code
    assert not gate.may_card_raw([b'{"code": {"coding": [{"code": "2823-3"}]}}'])


def test_a_dask_local_cluster_gives_the_serial_results(export: Path, serial: Path,
                                                       tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    summary = screen(export, tmp_path, now=NOW, workers=2, dask="local", progress=False)
    assert summary.engine == "dask local"
    for name in ("worklist.csv", "responses.ndjson", "rejected.ndjson"):
        assert (tmp_path / name).read_bytes() == (serial / name).read_bytes()


def test_an_unfinished_run_is_said_and_redone(export: Path, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "responses.ndjson").write_text("partial\n")
    with caplog.at_level("WARNING", logger="twitch_cds.screen"):
        screen(export, tmp_path, now=NOW, progress=False)
    assert "unfinished run" in caplog.text
    assert "partial" not in (tmp_path / "responses.ndjson").read_text()
    assert (tmp_path / "summary.json").exists()


def test_progress_is_logged_when_not_on_a_terminal(export: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="twitch_cds.screen"):
        screen(export, tmp_path, now=NOW, progress=True)
    assert "400 patients" in caplog.text and "patients/s" in caplog.text


def test_a_gzipped_export_split_over_files_matches_evaluate(tmp_path: Path) -> None:
    export = tmp_path / "export"
    population.generate(export, 120, seed=11, split=3, gz=True, twitching=0.3)
    out = tmp_path / "out"
    summary = screen([p for p in sorted(export.iterdir()) if p.suffix == ".gz"], out, now=NOW,
                     progress=False)  # a list of files
    responses = _responses(out)
    groups = _resources(export)
    assert summary.patients_read == len(groups) == 120
    for pid, resources in groups.items():
        expected = twitch_cds.evaluate(resources, now=NOW)
        got = responses.get(pid, {"response": {"cards": []}})["response"]["cards"]
        assert [c["uuid"] for c in got] == [str(c.uuid) for c in expected.cards]


def _charts() -> Iterator[tuple[str, Any, str, dict[str, float] | None]]:
    import yaml

    root = Path(__file__).resolve().parent
    for path in sorted((root / "scenarios").glob("*.yaml")):
        scenario = yaml.safe_load(path.read_text(encoding="utf-8"))
        if "input" in scenario:  # the others are the examples, read below
            yield (path.name, scenario["input"], str(scenario.get("now") or NOW),
                   scenario.get("parameters"))
    for path in sorted((root.parent / "examples").glob("*.json")):
        yield path.name, json.loads(path.read_text(encoding="utf-8")), NOW, None


def test_the_gate_passes_every_curated_chart_that_has_cards() -> None:
    """Every scenario and example that evaluate() gives a card passes both gates."""
    from twitch_cds.fhir_in.reader import read_input

    gate = CardGate(twitch_cds.load_knowledge())
    carded = 0
    for name, data, now, parameters in _charts():
        try:
            result = twitch_cds.evaluate(data, now=now, parameters=parameters)
        except twitch_cds.InputError:
            continue
        if not result.cards:
            continue
        carded += 1
        resources = [r.data for r in read_input(data).resources]
        lines = [json.dumps(r).encode() for r in resources]
        assert gate.may_card_raw(lines) and gate.could_card(resources), name
    assert carded > 20


def test_a_dask_cluster_with_threaded_workers_is_refused(export: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    from twitch_cds.screening.dask_adapter import DaskError

    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            pytest.raises(DaskError, match="not thread-safe"):
        screen(export, tmp_path, now=NOW, dask=cluster.scheduler_address, progress=False)
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.parametrize("line", [
    b'{"resourceType": "Observation", "subject": {"reference": "Patient/a"}}',
    b'{"a": "\xc3\xa9"}', b'{"a": "\xff"}', b'\xef\xbb\xbf{"a": 1}', b'{"a": 1', b'[1]',
    '{"a": 1}'.encode("utf-16-le"), b'{"a": "\\u00e9"}'])
def test_the_fast_json_reading_reads_as_json_loads(line: bytes) -> None:
    from twitch_cds.screening.worker import _loads

    try:
        expected: Any = json.loads(line)
    except ValueError as exc:
        expected = type(exc)
    try:
        got: Any = _loads(line)
    except ValueError as exc:
        got = type(exc)
    assert got == expected


@pytest.mark.parametrize("resource", [
    {"resourceType": "Observation", "subject": {"reference": "Patient/a"}},
    {"resourceType": "Observation", "subject": {"reference": "Patient/b"}},
    {"resourceType": "Observation", "subject": {"reference": "http://x/fhir/Patient/a"}},
    {"resourceType": "Observation", "subject": {"reference": "Group/a"},
     "patient": {"reference": "Patient/a"}},
    {"resourceType": "Patient", "id": "a", "subject": {"reference": "Patient/b"}},
    {"resourceType": "Patient", "id": "a"}, {"resourceType": "Observation"}, [1],
    {"resourceType": "Condition", "subject": "Patient/a"}])
def test_the_quick_patient_check_agrees_with_patient_of(resource: Any) -> None:
    from twitch_cds.screening.partition import patient_of
    from twitch_cds.screening.worker import _refers

    if _refers(resource, "a"):  # the quick check never accepts what patient_of refuses
        assert patient_of(resource) == "a"
    common = {"resourceType": "Observation", "subject": {"reference": "Patient/a"}}
    assert _refers(common, "a") and not _refers(common, "b")
