import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path
