"""``twitch-cds export fhir-package``: an NPM-style FHIR package of the knowledge, R4 and R5,
unpacked and validated resource by resource here, independently of the exporter."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from twitch_cds import load_knowledge
from twitch_cds.cli import main
from twitch_cds.export.fhir_package import PackageError, validate, write_fhir_package
from twitch_cds.knowledge.bundle import Knowledge
from twitch_cds.knowledge.reviews import record_review

VERSIONS = {"R4": "4.0.1", "R5": "5.0.0"}


def _model(version: str, resource_type: str) -> Any:
    if version == "R5":
        from fhir.resources import get_fhir_model_class
    else:  # fhir.resources ships R4B as its nearest model of R4 (4.0.1)
        from fhir.resources.R4B import get_fhir_model_class
    return get_fhir_model_class(resource_type)


def _unpack(tarball: Path, into: Path) -> dict[str, dict[str, Any]]:
    """The package's files, read from its tarball (not from the exporter's directory)."""
    with tarfile.open(tarball) as archive:
        archive.extractall(into, filter="data")
    return {path.name: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted((into / "package").glob("*.json"))}


@pytest.fixture(scope="module", params=sorted(VERSIONS))
def package(request: pytest.FixtureRequest, knowledge: Knowledge,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, dict[str, Any]]]:
    version = request.param
    out = tmp_path_factory.mktemp(f"package-{version}")
    written = write_fhir_package(out, knowledge, version)
    return version, _unpack(written.tarball, tmp_path_factory.mktemp("unpacked"))


def _resources(files: dict[str, dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for name, r in files.items()
            if name != "package.json" and r.get("resourceType") == kind}


def test_the_manifest_names_the_fhir_version(package: tuple[str, dict[str, Any]]) -> None:
    version, files = package
    manifest = files["package.json"]
    assert manifest["name"] == f"twitch-cds.knowledge.{version.lower()}"
    assert manifest["fhirVersions"] == [VERSIONS[version]]
    assert manifest["dependencies"] == {f"hl7.fhir.{version.lower()}.core": VERSIONS[version]}
    assert manifest["version"] and manifest["canonical"]
    index = {entry["filename"] for entry in files[".index.json"]["files"]}
    assert index == set(files) - {"package.json", ".index.json"}


def test_every_resource_validates(package: tuple[str, dict[str, Any]]) -> None:
    version, files = package
    resources = [r for name, r in files.items() if name not in ("package.json", ".index.json")]
    assert len(resources) > 100
    for resource in resources:
        _model(version, resource["resourceType"]).model_validate(resource)


def test_value_sets_are_the_shipped_terminology(package: tuple[str, dict[str, Any]],
                                                knowledge: Knowledge) -> None:
    _, files = package
    exported = _resources(files, "ValueSet")
    shipped = {path.stem.removeprefix("valueset-"): json.loads(path.read_text())
               for path in (knowledge.directory / "terminology").glob("valueset-*.json")}
    assert set(exported) == set(shipped) == set(knowledge.terminology.titles)
    for name, valueset in exported.items():
        def codes(resource: dict[str, Any]) -> set[tuple[str, str]]:
            return {(c["system"], c["code"]) for c in resource["expansion"]["contains"]}
        assert valueset["compose"] == shipped[name]["compose"], name
        composed = {(inc["system"], c["code"]) for inc in valueset["compose"]["include"]
                    for c in inc.get("concept", [])}
        # the shipped expansion, and every code the compose enumerates; nothing else
        assert codes(valueset) == codes(shipped[name]) | composed, name
        for code in valueset["expansion"]["contains"]:  # each member is in the terminology
            assert name in {m.valueset for m in knowledge.terminology.lookup(
                code["system"], code["code"])} or code["system"].endswith("medication-name"), \
                (name, code)
    assert _resources(files, "CodeSystem").keys() == {"twitch-cds"}


def test_one_plan_definition_per_rule(package: tuple[str, dict[str, Any]],
                                      knowledge: Knowledge) -> None:
    version, files = package
    plans = _resources(files, "PlanDefinition")
    activities = {a["url"] for a in _resources(files, "ActivityDefinition").values()}
    assert set(plans) == set(knowledge.rules_by_id)
    for rule_id, plan in plans.items():
        rule = knowledge.rules_by_id[rule_id].rule
        assert plan["version"] == rule.maintenance.version
        assert plan["type"]["coding"][0]["code"] == "eca-rule"
        assert plan["status"] == "draft" and plan["experimental"] is True  # not reviewed
        assert "approvalDate" not in plan and "reviewer" not in plan
        assert {"url": "https://twitch-cds.github.io/fhir/StructureDefinition/review-state",
                "valueCode": "never-reviewed"} in plan["extension"]
        action = plan["action"][0]
        assert [t["name"] for t in action["trigger"]] == list(rule.knowledge.evoke)
        condition = action["condition"][0]["expression"]
        assert condition["reference"].endswith(f"{knowledge.rules_by_id[rule_id].path.name}")
        assert condition["language"] != "text/cql"  # honest: not executable CQL
        conclude = rule.knowledge.conclude
        if conclude is not None:
            code = action["code"][0] if version == "R4" else action["code"]
            assert code["coding"][0]["code"] == conclude.card
            assert len(action["textEquivalent"]) < 140
            for child in action.get("action", []):
                assert child["definitionCanonical"] in activities
        source = rule.library.knowledge_source
        if source is not None:  # a guideline, not the article, justifies it
            assert action["documentation"][0]["type"] == "justification"
            assert action["documentation"][0]["citation"] == source.reference
    red = plans["red-flag-weakness"]["action"][0]
    assert red["priority"] == "urgent" and red["action"], "the urgent evaluation is suggested"


def test_an_activity_that_orders_one_thing_carries_its_standard_code(
        package: tuple[str, dict[str, Any]], knowledge: Knowledge) -> None:
    """What an EHR routes: the LOINC or SNOMED CT code of orders.yaml, never a local one."""
    _, files = package
    activities = _resources(files, "ActivityDefinition")
    by_id = {a["id"]: a for a in activities.values()}
    assert by_id["neurology-referral"]["code"]["coding"] == [
        knowledge.orders.procedures["neurology-referral"].coding.model_dump()]
    assert by_id["critical-potassium"]["code"]["coding"][0]["code"] == "2823-3"
    coded = [a for a in activities.values() if a["code"].get("coding")]
    assert len(coded) >= len(activities) - 2, "most suggestions order one thing"
    for activity in coded:
        assert {c["system"] for c in activity["code"]["coding"]} <= {
            "http://loinc.org", "http://snomed.info/sct"}, activity["id"]


def test_the_library_names_every_artifact(package: tuple[str, dict[str, Any]],
                                          knowledge: Knowledge) -> None:
    _, files = package
    library = _resources(files, "Library")["twitch-cds-ruleset"]
    assert library["version"] == knowledge.version
    assert library["status"] == "draft"
    related = {a["resource"] for a in library["relatedArtifact"]}
    urls = {r["url"] for name, r in files.items() if name.endswith(".json")
            and r.get("resourceType") not in (None, "Library")}
    assert related == urls
    assert "not CQL" in library["description"]


def test_a_reviewed_rule_is_active_with_its_reviewer(knowledge: Knowledge,
                                                     tmp_path: Path) -> None:
    rulesets = tmp_path / "rulesets"
    shutil.copytree(knowledge.directory, rulesets)
    record_review(rulesets, "caffeine-disorder", reviewer="Dr C. Internist",
                  role="Internal medicine", decision="approved", date=dt.date(2026, 12, 7))
    path = next((rulesets / "rules").rglob("caffeine-disorder.yaml"))
    data = yaml.safe_load(path.read_text())
    data["maintenance"].update(validation="production", reviewed="2026-12-07",
                               specialist="Dr C. Internist, Internal medicine")
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    written = write_fhir_package(tmp_path / "out", load_knowledge(rulesets), "R5")
    plan = json.loads((written.directory / "PlanDefinition-caffeine-disorder.json").read_text())
    assert plan["status"] == "active" and plan["experimental"] is False
    assert plan["approvalDate"] == "2026-12-07"
    assert plan["reviewer"] == [{"name": "Dr C. Internist, Internal medicine"}]


def test_an_invalid_resource_is_refused() -> None:
    with pytest.raises(PackageError, match="PlanDefinition/x"):
        validate({"resourceType": "PlanDefinition", "id": "x", "status": "draft",
                  "action": [{"trigger": "patient-view"}]}, "R4")


def test_the_command_writes_the_package(tmp_path: Path, knowledge: Knowledge,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "fhir-package", str(tmp_path), "--fhir-version", "R5"]) == 0
    assert f"{len(knowledge.rules)} PlanDefinition" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "package" / "package.json").read_text())
    assert manifest["fhirVersions"] == ["5.0.0"]
    assert (tmp_path / f"twitch-cds.knowledge.r5-{manifest['version']}.tgz").is_file()
