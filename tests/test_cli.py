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
    assert "[KRITIS] Fasikulasi tungkai dengan tanda bahaya" in capsys.readouterr().out


def test_the_cards_link_to_the_catalogue_given(bundle_file: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(bundle_file), "--now", NOW, "--format", "json",
                 "--catalogue", "https://cds.example.org/catalogue"]) == 0
    cards = json.loads(capsys.readouterr().out)["cards"]
    assert all(c["source"]["url"].startswith("https://cds.example.org/catalogue/en/rules/")
               for c in cards) and cards


@pytest.fixture
def no_card_file(tmp_path: Path) -> Path:
    """No card, one issue: a misspelt resource type and a finding the rules need more for."""
    misspelt = dict(twitching(), resourceType="Observaton")
    path = tmp_path / "chart.json"
    path.write_text(json.dumps([misspelt, obs("w", SCT, "26544005")]))
    return path


@pytest.mark.parametrize(("lang", "words"), [
    ("en", ["No cards: 1 usable fact(s) were read from this data",
            "This does not rule out a problem: it says only what this record contains.",
            "1 input issue(s) below name data", "Input issues (1):",
            "  - error: Observaton/tw1 resourceType: not a FHIR resource type",
            "(skipped, unknown-resource-type)"]),
    ("id", ["Tidak ada kartu: 1 fakta yang dapat dipakai terbaca dari data ini",
            "Ini tidak menyingkirkan adanya masalah: ini hanya menyatakan isi rekam data ini.",
            "1 masalah data masukan di bawah", "Masalah data masukan (1):",
            "  - galat: Observaton/tw1 resourceType: bukan jenis sumber daya FHIR",
            "(dilewati, unknown-resource-type)"]),
])
def test_no_cards_says_what_the_data_holds_in_either_language(
        no_card_file: Path, lang: str, words: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(no_card_file), "--now", NOW, "--lang", lang]) == 0
    out = capsys.readouterr().out
    for text in words:
        assert text in out, (text, out)
    first = out.splitlines()[0]
    # about the data only: never a statement about the patient
    assert not {"patient", "pasien", "twitching", "kedutan"} & set(first.lower().split())


def test_cli_errors_in_indonesian(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    assert main(["evaluate", str(path), "--lang", "id"]) == 2
    assert capsys.readouterr().err.startswith("twitch-cds: galat: masukan bukan JSON: ")
    assert main(["evaluate", str(path), "--lang", "id", "--param", "x=y"]) == 2
    assert capsys.readouterr().err == "twitch-cds: galat: --param 'x=y': 'y' bukan bilangan\n"


def test_json_output_reports_issues_on_stderr_in_the_chosen_language(
        no_card_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(no_card_file), "--now", NOW, "--format", "json",
                 "--lang", "id"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"cards": []}
    assert captured.err.startswith("twitch-cds: masalah data masukan: galat: Observaton")
    assert "unknown-resource-type" in captured.err and "not a FHIR" not in captured.err


def test_evaluate_reads_stdin() -> None:
    done = subprocess.run([sys.executable, "-m", "twitch_cds.cli", "evaluate", "-", "--now", NOW],
                          input=json.dumps(twitching()), capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0 and "(explanation)" in done.stdout


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
    assert main(["rules", "--format", "json", "--lang", "id"]) == 0
    assert json.loads(capsys.readouterr().out) == catalogue  # machine-readable: one language


@pytest.mark.parametrize(("lang", "concludes", "gloss"), [
    ("en", "  -> card red-flag\n", True), ("id", "  -> kartu red-flag\n", False)])
def test_rules_text_in_either_language(lang: str, concludes: str, gloss: bool,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--lang", lang]) == 0
    weakness = next(block for block in capsys.readouterr().out.split("\n\n")
                    if block.startswith("red-flag-weakness "))
    assert concludes in weakness + "\n"
    assert ("\n  (If " in weakness) is gloss  # the English gloss of the article's sentence


def test_the_example_script_runs() -> None:
    script = Path(__file__).resolve().parents[1] / "examples" / "evaluate_example.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "(electrolytes)" in done.stdout


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


def test_the_screen_summary_line_in_indonesian(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "Observation.ndjson").write_text(
        "".join(json.dumps(r) + "\n" for r in (twitching(), obs("w", SCT, "26544005"))))
    assert main(["screen", str(export), "--out", str(tmp_path / "out"), "--now", NOW,
                 "--lang", "id"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("1 pasien (2 sumber daya) dalam ")
    assert "1 masuk daftar kerja, 0 baris ditolak, 0 gagal; " in line
    assert " s, " not in line and "patients" not in line
