import contextlib
import pathlib
import sys

import pytest

# Tests import the package from the source tree even when it was not pip-installed.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "extensions_lib"))


@pytest.fixture
def one_thread():
    """Two cores shared with other work: one intra-op thread avoids OpenMP spin contention (100x slower otherwise)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _reap_training_processes(tmp_path):
    """A failing test must not leave a training subprocess behind (it would slow every later test): kill any
    process whose command line names this test's tmp_path."""
    yield
    import os
    import signal

    proc = pathlib.Path("/proc")
    if not proc.is_dir():
        return
    needle = str(tmp_path).encode()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny random SD1.5-architecture diffusers folder, built once per run (read-only for the tests)."""
    pytest.importorskip("diffusers")
    from hypersd.distill.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", base="sd15")
