"""The command line: evaluate a file or stdin, print text or CDS Hooks JSON, list the rules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from twitch_cds.cli import main

from .builders import NOW, SCT, obs, twitching


@pytest.fixture
def bundle_file(tmp_path: Path) -> Path:
    path = tmp_path / "patient.json"
    path.write_text(json.dumps([twitching(), obs("w", SCT, "26544005")]))
    return path


def test_evaluate_prints_cds_hooks_json(bundle_file: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(bundle_file), "--now", NOW, "--format", "json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["cards"][0]["source"]["topic"]["code"] == "red-flag"


def test_evaluate_text_in_indonesian(bundle_file: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(bundle_file), "--now", NOW, "--lang", "id"]) == 0
    assert "[CRITICAL] Kedutan kaki dengan tanda bahaya" in capsys.readouterr().out


def test_evaluate_reads_stdin() -> None:
    done = subprocess.run([sys.executable, "-m", "twitch_cds.cli", "evaluate", "-", "--now", NOW],
                          input=json.dumps(twitching()), capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0 and "self-care" in done.stdout


def test_bad_input_exits_2_with_a_message(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    assert main(["evaluate", str(path)]) == 2
    assert "not JSON" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing.json")]) == 2
    assert main(["evaluate", str(path), "--param", "x"]) == 2


def test_rules_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--format", "json"]) == 0
    catalogue = json.loads(capsys.readouterr().out)
    weakness = next(r for r in catalogue if r["id"] == "red-flag-weakness")
    assert weakness["sentence"].startswith("Jika berkedut parah")
    assert weakness["concludes"] == "card red-flag"


def test_the_example_script_runs() -> None:
    script = Path(__file__).resolve().parents[1] / "examples" / "evaluate_example.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "electrolyte-depletion" in done.stdout


def test_a_reader_that_stops_early_gets_no_traceback(bundle_file: Path) -> None:
    shell = (f"{sys.executable} -m twitch_cds.cli evaluate {bundle_file} --now {NOW} "
             "| head -n 1")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[CRITICAL]")
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


@pytest.mark.parametrize("text", ["", "  \n"])
def test_an_empty_file_says_it_is_empty(tmp_path: Path, text: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.json"
    path.write_text(text)
    assert main(["evaluate", str(path), "--now", NOW]) == 2
    assert "the input is empty" in capsys.readouterr().err


def test_a_missing_status_is_reported_once() -> None:
    import twitch_cds

    from .builders import RXNORM, med_statement

    observation, statement = twitching(), med_statement("m", [{"system": RXNORM, "code": "4603"}])
    del observation["status"], statement["status"]
    result = twitch_cds.evaluate([observation, statement, twitching("tw2")], now=NOW)
    for reference in ("Observation/tw1", "MedicationStatement/m"):
        about = [i for i in result.issues if i.resource == reference and i.path == "status"]
        assert len(about) == 1 and about[0].code == "status-unusable", about


def test_version_names_the_package_and_the_ruleset() -> None:
    import twitch_cds
    from twitch_cds.knowledge.bundle import default_knowledge

    done = subprocess.run([sys.executable, "-m", "twitch_cds.cli", "--version"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert done.stdout.startswith(f"twitch-cds {twitch_cds.__version__} ")
    assert default_knowledge().version in done.stdout
