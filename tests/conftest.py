import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import Case, write_released  # noqa: E402


@pytest.fixture(scope="session")
def case_small():
    return Case("case_small")


@pytest.fixture(scope="session")
def case_reflen():
    return Case("case_reflen")


@pytest.fixture(scope="session")
def case_comfy():
    return Case("case_comfy")


@pytest.fixture(scope="session")
def released_small(case_small, tmp_path_factory):
    """case_small's model as a released checkpoint folder (single file)."""
    return write_released(tmp_path_factory.mktemp("released_small"), case_small.group("official"), case_small.config)
