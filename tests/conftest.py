"""Shared fixtures: seeded RNGs, a throw-away cache, and the device the device tests run on.

Devices (the GPU check of issue 13, ``benchmarks/gpu_check.py``):

* ``--device cpu|cuda`` (default ``cpu``) is the device of the session-wide ``device`` fixture
  (a :class:`torch.device`).  ``--device cuda`` on a machine without CUDA stops the session at
  start with an error, so a GPU check never passes by running on the CPU.
* A test that takes the ``device`` fixture is a *device test* (resume, mixing, Shapley
  estimation, DDP): it runs on that device and is marked ``cuda`` automatically.
* ``@pytest.mark.cuda`` on a test that does not take the fixture says that it needs CUDA
  itself (e.g. a test under ``torch.cuda.set_sync_debug_mode``); it is skipped, with that
  reason, where CUDA is not available.

So ``python -m pytest --device cuda -m cuda`` runs every device test on the GPU and every
CUDA-only test; a plain ``python -m pytest`` runs the device tests on the CPU.

Under pytest-xdist (``-n auto`` in pyproject.toml) each worker gets an equal share of the CPU
cores as torch threads, so that workers do not oversubscribe the machine.

With ``--device cuda`` the session sets ``CUBLAS_WORKSPACE_CONFIG`` (before cuBLAS starts) so
that tests may switch on ``torch.use_deterministic_algorithms`` for bit-exact comparisons.
"""

from __future__ import annotations

import os

import pytest
import torch

DEVICE_OPTION = "--device"
DEVICES = ("cpu", "cuda")
CUDA_MARKER = "cuda"
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"
"""cuBLAS's documented setting for deterministic results (its workspace per stream)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        DEVICE_OPTION,
        choices=DEVICES,
        default="cpu",
        help="device of the device tests (the `device` fixture): cpu (default) or cuda; "
        "select the device and CUDA-only tests with -m cuda",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{CUDA_MARKER}: part of the GPU check; added to every test taking the `device` fixture "
        "(runs on --device), or put on a test that needs CUDA itself (skipped without CUDA)",
    )
    if config.getoption(DEVICE_OPTION) == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise pytest.UsageError(
                f"{DEVICE_OPTION} cuda: CUDA is not available (torch {torch.__version__}, {build}, "
                f"{torch.cuda.device_count()} GPU(s) visible); run with {DEVICE_OPTION} cpu"
            )
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC_WORKSPACE)
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is not None:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


@pytest.hookimpl(tryfirst=True)  # before -m selects on the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needs_cuda = pytest.mark.skip(reason="needs CUDA, which is not available here")
    for item in items:
        takes_device = "device" in getattr(item, "fixturenames", ())
        if takes_device:
            item.add_marker(CUDA_MARKER)
        elif item.get_closest_marker(CUDA_MARKER) is not None and not torch.cuda.is_available():
            item.add_marker(needs_cuda)


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> torch.device:
    """The device given by ``--device`` (``cpu`` unless asked otherwise)."""
    return torch.device(pytestconfig.getoption(DEVICE_OPTION))


@pytest.fixture
def deterministic():
    """Deterministic algorithms (cuDNN, cuBLAS, atomics) for the test, for bit-exact comparisons
    on a GPU; ``warn_only`` so that an op without a deterministic kernel warns, naming itself,
    and the comparison that follows says what differs."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    """Seed torch and keep generated datasets out of the user's cache."""
    torch.manual_seed(0)
    monkeypatch.setenv("SHAPMIX_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
