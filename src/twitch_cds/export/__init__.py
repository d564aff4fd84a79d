"""Exports of the knowledge in standard forms: ``twitch-cds export fhir-package OUT``. A
front door beside ``cli`` and ``service``: it reads ``knowledge/``; nothing below it
imports it."""

from __future__ import annotations

import argparse

from twitch_cds.knowledge.bundle import default_knowledge


def export_command(args: argparse.Namespace) -> int:
    """``twitch-cds export fhir-package OUT [--fhir-version R4|R5]``."""
    from twitch_cds.export.fhir_package import write_fhir_package

    package = write_fhir_package(args.out, default_knowledge(), args.fhir_version)
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(package.resources.items()))
    print(f"FHIR {args.fhir_version} package: {counts}; every resource validated with "
          f"fhir.resources; in {package.directory} and {package.tarball}")
    return 0
