"""Run by tests/test_loader.py under ``torchrun --nproc_per_node=2`` (gloo, CPU).

Each rank iterates a shuffled ShardDataset; the ranks gather what they yielded, check
that they yielded the same number of batches (an all_reduce per batch would hang
otherwise), and rank 0 writes a report with a state saved mid-epoch."""

import json
import os
import sys

import torch
import torch.distributed as dist

import cvload


def main(directory: str, out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    loader = cvload.DataLoader(cvload.ShardDataset(directory, shuffle=True, seed=3),
                               batch_size=4, num_workers=1)
    assert (loader.rank, loader.world_size) == (rank, world)
    ids, batches = [], 0
    for batch in loader:
        ids += batch["__index__"].tolist()
        step = torch.tensor([1.0])
        dist.all_reduce(step)  # a collective per batch: hangs if ranks disagree
        batches += 1
    gathered = [None] * world
    dist.all_gather_object(gathered, {"ids": ids, "batches": batches})
    # mid-epoch save: two batches each, in lockstep
    loader = cvload.DataLoader(cvload.ShardDataset(directory, shuffle=True, seed=3),
                               batch_size=4, num_workers=0)
    iterator = iter(loader)
    mine = [i for _ in range(2) for i in next(iterator)["__index__"].tolist()]
    consumed = [None] * world
    dist.all_gather_object(consumed, mine)
    if rank == 0:
        report = {"ids": [i for g in gathered for i in g["ids"]],
                  "batches": [g["batches"] for g in gathered], "state": loader.state_dict(),
                  "consumed": [i for c in consumed for i in c]}
        with open(os.path.join(out, "report.json"), "w") as f:
            json.dump(report, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
