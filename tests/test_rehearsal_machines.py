"""Several machines rehearsed on this CPU: ``qwen2.5-7b-2x4`` (2 machines x 4 GPUs) as 2
"machines" of 1 process each, the second in a network namespace of its own (root and
iproute2; ``.ci/run`` installs iproute2). A module of its own, so that it runs beside the
other rehearsals."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import require
from test_rehearsal import check_published_and_served, rehearse_killed_and_resumed

from people_relation.settings import parse_settings
from people_relation.training.recipe import batch_arithmetic


@pytest.mark.e2e
def test_two_machines_over_a_network_killed_and_resumed(
    params, data_dir, published_split, prefect_api, tmp_path, project_root
):
    """``qwen2.5-7b-2x4`` as 2 machines of 1 process each: machine 0 is the train flow here,
    machine 1 the command its docs give (``python -m flows.train --machine-rank 1``) in a network
    namespace of its own; they meet at machine 0's address on a bridge, under ZeRO-3 over gloo.
    Killed after the first checkpoint (both machines go), resumed on both, the final save
    gathered from both into machine 0's model."""
    missing = [] if shutil.which("ip") else ["iproute2's ip"]
    missing += [] if os.geteuid() == 0 else ["root (a network namespace and a bridge)"]
    require(missing, "the 2-machine rehearsal over a network")
    name = "qwen2.5-7b-2x4"
    r = rehearse_killed_and_resumed(
        name,
        params,
        data_dir,
        published_split,
        prefect_api,
        tmp_path,
        project_root,
        rehearsal__machines__network="netns",
    )
    batch = batch_arithmetic(parse_settings(r.params).profile(name))
    assert (batch["num_processes"], batch["completions_per_step"], batch["prompts_per_step"]) == (2, 32, 4)
    assert [(s["step"], s["completions"], s["prompts"]) for s in r.summary["rollout"]] == [(1, 32, 4), (2, 32, 4)]
    # machine 1 in its namespace, reaching machine 0 only over the bridge
    assert "Machine 1 of 2 at 10.231.0.2: ip netns exec prr-m1 " in r.output
    machine_1 = (r.root / "machine-1.log").read_text()
    assert "--machine_rank 1 --main_process_ip 10.231.0.1 --main_process_port 29517" in machine_1
    assert "--machine_rank 0 --main_process_ip 10.231.0.1" in r.output
    # each machine's rank resumed from the shared checkpoint (rank 1 from the ZeRO-3 shard it wrote
    # there before the kill), and ended with the other
    assert "Resuming GRPO from" in machine_1 and "Process 1 of 2 done" in machine_1
    assert "Communication closed" in machine_1 and "Communication closed" in r.output  # no teardown race
    assert "Process 0 of 2 done" in r.output and "Machine 1 of 2 done" in r.output
    check_published_and_served(r)
    # the namespace and the bridge are gone, the killed run's too
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert "prr-m1" not in namespaces
    assert subprocess.run(["ip", "link", "show", "prr-br"], capture_output=True).returncode != 0
