"""Scale-out: chunk-wise volume prediction on Dask, and DistributedDataParallel training.

- :func:`predict_volume_iter` / :func:`predict_volume`: predict a (larger than memory)
  volume chunk by chunk, each chunk read with a halo of context, in this process or
  on a ``dask.distributed`` cluster (a LocalCluster with N workers, or any scheduler by
  address), writing into one Zarr store. Resumable: a run killed halfway and started
  again skips the chunks already written and gives the same result.
- :func:`ddp_env`, :func:`ddp_train_iter`, :func:`shard_indices`: run the training loop
  under ``torchrun`` with DistributedDataParallel (gloo on CPU, NCCL on GPUs), each rank
  on its own shard, rank 0 alone writing checkpoints.

Nothing here imports torch, dask or zarr at module level.
"""

from .ddp import DDPEnv, ddp_env, ddp_train, ddp_train_iter, shard_indices, unwrap
from .volume import VolumeResult, predict_volume, predict_volume_iter

__all__ = [
    "DDPEnv",
    "VolumeResult",
    "ddp_env",
    "ddp_train",
    "ddp_train_iter",
    "predict_volume",
    "predict_volume_iter",
    "shard_indices",
    "unwrap",
]
