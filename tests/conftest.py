import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]

# Real sample data lives beside the repository, not in it; tests that use it skip without it.
SHARED_DATA = ROOT.parent / "shared" / "data"

# Shared, session-scoped fixtures (tiny synthetic dataset, tiny trained run, tiny export)
# live in their own modules so each stays small; every test can request them by name.
pytest_plugins = ["tests.fixtures.dataset", "tests.fixtures.model", "tests.fixtures.export"]
