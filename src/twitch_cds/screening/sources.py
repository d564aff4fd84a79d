"""Where a Bulk Data export's NDJSON files are: a manifest, a directory, or a list of files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse


class ExportError(ValueError):
    """The export cannot be found or its manifest cannot be read (nothing was screened)."""


def _manifest_files(manifest: Path) -> list[Path]:
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{manifest}: cannot be read as a Bulk Data manifest: {exc}") from exc
    outputs = data.get("output") if isinstance(data, dict) else None
    if not isinstance(outputs, list):
        raise ExportError(f"{manifest}: no output[] list")
    files = []
    for i, entry in enumerate(outputs):
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(url, str):
            raise ExportError(f"{manifest}: output[{i}] has no url")
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https"):
            raise ExportError(f"{manifest}: output[{i}] is remote ({url}); download it first")
        path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(url)
        files.append(path if path.is_absolute() else manifest.parent / path)
    return files


def export_files(export: str | Path | Sequence[str | Path]) -> list[Path]:
    """The NDJSON files (``.ndjson`` or ``.ndjson.gz``) of an export, in a stable order."""
    if not isinstance(export, str | Path):
        files = [Path(p) for p in export]
    else:
        path = Path(export)
        if path.is_dir():
            manifest = path / "manifest.json"
            files = (_manifest_files(manifest) if manifest.is_file() else
                     sorted([*path.glob("*.ndjson"), *path.glob("*.ndjson.gz")]))
        elif path.suffix == ".json":
            files = _manifest_files(path)
        else:
            files = [path]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise ExportError(f"not found: {', '.join(missing[:5])}")
    if not files:
        raise ExportError(f"{export}: no .ndjson or .ndjson.gz files")
    return files
