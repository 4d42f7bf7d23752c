import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"


@pytest.fixture(scope="session")
def smoke_out(tmp_path_factory):
    "One report folder shared by the smoke runs of all notebooks (later notebooks reuse cached teachers)."
    return tmp_path_factory.mktemp("reports") / "smoke"


@pytest.fixture(autouse=True, scope="session")
def _cache_env(tmp_path_factory):
    "Tests use their own teacher cache unless KD_REPRO_CACHE is set (CI sets it to the clone's .cache)."
    for var in ("KD_REPRO_DATA", "KD_REPRO_CACHE"):  # notebooks run in nbs/: relative paths would move
        if os.environ.get(var):
            os.environ[var] = str(Path(os.environ[var]).expanduser().resolve())
    if not os.environ.get("KD_REPRO_CACHE"):
        os.environ["KD_REPRO_CACHE"] = str(tmp_path_factory.mktemp("kd_cache"))
    yield
