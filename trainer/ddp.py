"""Multi-process (DDP) training, the public entry point to run under torchrun:

    torchrun --standalone --nproc-per-node 2 -m edgefleet.trainer.ddp digits --out ckpt.pt
    edgefleet train digits --checkpoint ckpt.pt --out out/

Arguments: a recipe (file or built-in name), ``--out`` (the checkpoint rank 0 writes) and
``--epochs`` (overrides the recipe's). Gloo on CPU, NCCL on GPUs; torchrun starts the
processes and sets RANK/WORLD_SIZE/MASTER_ADDR.
"""

from ._ddp import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
