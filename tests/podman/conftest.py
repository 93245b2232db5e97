"""The podman tests use the Kubernetes API stand-in of the host unit tests."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit" / "host"))
