"""The role's guide names every variable and job key that meta/argument_specs.yml documents."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
SPEC = yaml.safe_load((ROOT / "roles/btrfs_backup/meta/argument_specs.yml").read_text())
OPTIONS = SPEC["argument_specs"]["main"]["options"]


def _guides() -> str:
    """The README and every guide under docs/, where the role's settings are described."""
    texts = [(ROOT / "README.md").read_text()]
    texts += [p.read_text() for p in sorted((ROOT / "docs").rglob("*")) if p.suffix in (".md", ".rst")] \
        if (ROOT / "docs").is_dir() else []
    return "\n".join(texts)


def _named(text: str, variable: str) -> bool:
    # A table row may name a family once: `btrfs_backup_num_snapshots` / `_num_backups`
    # (``...`` in the reStructuredText guides).
    suffixes = [variable[i:] for i in range(len("btrfs_backup"), len(variable)) if variable[i] == "_"]
    return f"`{variable}`" in text or any(f"/ `{s}`" in text or f"/ ``{s}``" in text for s in suffixes)


@pytest.mark.parametrize("variable", sorted(OPTIONS))
def test_every_role_variable_is_in_the_guide(variable):
    assert _named(_guides(), variable), f"{variable} is documented in argument_specs but not in the guide"


@pytest.mark.parametrize("key", sorted(OPTIONS["btrfs_backup_jobs"]["options"]))
def test_every_job_key_is_in_the_guide(key):
    assert f"`{key}`" in _guides(), f"job key {key} is documented in argument_specs but not in the guide"
