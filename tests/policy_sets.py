"""Policy sets for tests: the hand-maintained files alone (a small set, as before the import)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from rules.loader import load_policies
from rules.policy import PolicySet

SHIPPED = Path(__file__).resolve().parent.parent / "rules" / "policies"


def hand_maintained_dir() -> Path:
    """A throw-away folder with copies of the shipped top-level (hand-maintained) policy files."""
    folder = Path(tempfile.mkdtemp(prefix="yibao-hand-policies-"))
    atexit.register(shutil.rmtree, folder, True)
    for file in SHIPPED.glob("*.yaml"):
        shutil.copy(file, folder / file.name)
    return folder


def hand_maintained_policies() -> PolicySet:
    return load_policies(hand_maintained_dir())
