"""Multi-process training through torchrun (DDP; gloo on CPU, nccl on GPUs).

    torchrun --standalone --nproc-per-node 2 -m edgefleet.trainer.ddp digits --out ckpt.pt
    edgefleet train digits --checkpoint ckpt.pt --out out/

torchrun starts the processes and sets RANK/WORLD_SIZE/MASTER_ADDR; this module only
joins the process group, trains its shard, and rank 0 writes the weights.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

__all__ = ["main"]

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="torchrun ... -m edgefleet.trainer.ddp")
    parser.add_argument("recipe", help="recipe file or built-in name")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    parser.add_argument("--epochs", type=int, default=None, help="override recipe epochs")
    args = parser.parse_args(argv)

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from ._data import load_dataset
    from ._models import build_model
    from ._recipe import load_recipe
    from ._train import evaluate, fit

    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        recipe = load_recipe(args.recipe)
        if recipe.train.threads:
            torch.set_num_threads(recipe.train.threads)
        torch.manual_seed(recipe.seed)  # same initial weights everywhere; DDP also syncs
        ds = load_dataset(recipe.data, recipe.seed)
        model = build_model(recipe.model.name, **recipe.model.args)
        ddp = DistributedDataParallel(model, gradient_as_bucket_view=True)
        fit(ddp, ds.x_train, ds.y_train, recipe.train, epochs=args.epochs, seed=recipe.seed,
            sampler_rank=(rank, world))  # fmt: skip
        shard = len(ds.x_train) // world
        print(f"rank {rank}/{world}: trained on {shard} of {len(ds.x_train)} samples", flush=True)
        dist.barrier()
        if rank == 0:
            acc = evaluate(model, ds.x_test, ds.y_test)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.out.with_suffix(".tmp")
            torch.save(model.state_dict(), tmp)
            tmp.replace(args.out)  # never leave a half-written checkpoint
            print(json.dumps({"world_size": world, "accuracy": acc, "checkpoint": str(args.out)}))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
