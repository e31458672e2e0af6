"""Multi-node training: two torchrun "nodes" on localhost train exactly like one node with two processes.

Two ``torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d`` agents, started at the same
time on this machine, meet at one rendezvous endpoint and run one ``shapmix train`` together
(gloo, CPU), writing to one run directory as nodes on a shared file system do.  The same config
run as ``torchrun --standalone --nproc-per-node 2`` must end with the same ``last.pt``: ranks
0 and 1 see the same data shards and random streams wherever they run, and with two ranks every
reduction (DDP's gradient average, synchronised batch norm, the saliency table's sums) adds two
numbers, which floating point does identically in either order, so the weights are compared
bit for bit, without a tolerance.

Every process is started in its own session and stopped on failure or timeout: torchrun first
(SIGTERM, so it stops its workers), then whatever of its process tree is left (SIGKILL).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from shapmix.engine.checkpoint import load_checkpoint

from helpers import make_tiny_dataset, tiny_overrides

PROCESSES = 2
RUN_TIMEOUT_S = 300
"""Wall-clock limit of one launch (all its agents together)."""
JOIN_TIMEOUT_S = 120
"""How long an agent waits at the rendezvous for the other node before it gives up."""
STOP_GRACE_S = 15
"""Time torchrun gets after SIGTERM to stop its workers before everything is killed."""
LOG_TAIL_CHARS = 3000
# Shap-Mix, so the saliency table's all-reduce is part of what must agree; estimating from epoch 2
TRAIN_EXTRA = [
    "method.name=shapmix", "method.warmup_epochs=1", "method.estimate_fraction=1.0", "data.window=16",
    "train.threads=1", "train.device=cpu", "log.plots=false",
]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("multinode") / "data")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *arguments]


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (Linux ``/proc``; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, frontier = [], [pid]
    while frontier:
        below = children.get(frontier.pop(), [])
        found += below
        frontier += below
    return found


def stop(process: subprocess.Popen) -> None:
    """Stop a torchrun agent and its workers (each worker runs in a session of its own)."""
    if process.poll() is not None:
        return
    tree = descendants(process.pid)
    process.send_signal(signal.SIGTERM)  # torchrun stops its workers on SIGTERM
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def launch(commands: list[list[str]], logs: Path) -> None:
    """Run ``commands`` concurrently; fail (with their logs) unless all exit 0 in time."""
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes: list[tuple[subprocess.Popen, Path]] = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        for index, command in enumerate(commands):
            log = logs / f"agent{index}.log"
            with open(log, "wb") as handle:
                process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            processes.append((process, log))
        for process, log in processes:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{log.name} still running after {RUN_TIMEOUT_S}s:\n{log.read_text()[-LOG_TAIL_CHARS:]}")
            if process.returncode != 0:
                pytest.fail(f"{log.name} exited with {process.returncode}:\n{log.read_text()[-LOG_TAIL_CHARS:]}")
    finally:
        for process, _ in processes:
            stop(process)


@pytest.mark.slow
def test_two_nodes_end_with_the_weights_of_two_processes_on_one_node(tiny_data, tmp_path):
    def shapmix_train(out: Path) -> list[str]:
        return ["-m", "shapmix", "train", "--out", str(out), *tiny_overrides(tiny_data, epochs=2), *TRAIN_EXTRA]

    one_node = tmp_path / "one_node"
    launch([torchrun("--standalone", "--nproc-per-node", str(PROCESSES), *shapmix_train(one_node))], tmp_path / "logs1")

    two_nodes = tmp_path / "two_nodes"
    port = free_port()
    node = torchrun(
        "--nnodes", str(PROCESSES), "--nproc-per-node", "1",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{port}", "--rdzv-id", f"shapmix-test-{port}",
        "--rdzv-conf", f"join_timeout={JOIN_TIMEOUT_S}",
        *shapmix_train(two_nodes),
    )
    launch([node, node], tmp_path / "logs2")

    for run in (one_node, two_nodes):
        assert f"{PROCESSES} process(es)" in (run / "train.log").read_text()
    expected, actual = load_checkpoint(one_node / "last.pt"), load_checkpoint(two_nodes / "last.pt")
    assert expected["epoch"] == actual["epoch"] == 1
    assert expected["model"].keys() == actual["model"].keys()
    for key, value in expected["model"].items():
        assert torch.equal(value, actual["model"][key]), key
    table, other = expected["method"]["table"], actual["method"]["table"]
    assert table["counts"].sum() > 0  # the table's all-reduce ran
    assert torch.equal(table["values"], other["values"]) and torch.equal(table["counts"], other["counts"])
