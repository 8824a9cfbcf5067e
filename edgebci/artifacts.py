"""On-disk artifacts: a folder with `manifest.json` (schema, versions, input hashes, target) beside its payload."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edgebci import __version__
from edgebci.errors import ConfigError

SCHEMA_VERSION = 1


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path, kind: str, payload: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.json"
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "kind": kind, "edgebci_version": __version__,
                                **payload}, indent=2, sort_keys=True) + "\n")
    return path


def read_manifest(folder: Path, kind: str) -> dict:
    path = Path(folder) / "manifest.json"
    if not path.exists():
        raise ConfigError(f"{folder} holds no manifest.json: it is not an edgebci {kind} folder; "
                          f"create one with `edgebci compile CHECKPOINT --target NAME --out {folder}`")
    data = json.loads(path.read_text())
    if data.get("kind") != kind or data.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(f"{path} describes a {data.get('kind')!r} (schema {data.get('schema_version')}), "
                          f"expected a {kind!r} (schema {SCHEMA_VERSION}); recompile it with this edgebci")
    return data
