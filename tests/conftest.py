import os
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))  # test helpers (site_files.py)
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def quiet_opacus():
    """One torch thread and Opacus's expected warnings silenced (DP-SGD tests)."""
    import warnings

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook")
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def site_files(tmp_path_factory):
    """Three sites' own CSV files (record_id, 8 features, text labels), different rows each (tests/site_files.py)."""
    from site_files import write_sites

    return write_sites(tmp_path_factory.mktemp("sites"))
