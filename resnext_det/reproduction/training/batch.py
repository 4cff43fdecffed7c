"""The batch rule both engines follow: Detectron2's."""

from ...utils.errors import ConfigError

__all__ = ["check_batch_split"]


def check_batch_split(ims_per_batch: int, reference_world_size: int, world_size: int) -> None:
    """Refuse a global batch that does not split into whole per-process batches.

    ``SOLVER.IMS_PER_BATCH`` is the global batch of ``SOLVER.REFERENCE_WORLD_SIZE``
    processes, scaled linearly to the launch (images per process stay fixed); with 0
    there it is the global batch of this launch, split over its processes.

    Raises:
        ConfigError: naming the batch and the processes it does not split over.
    """
    if reference_world_size and ims_per_batch % reference_world_size:
        raise ConfigError(
            f"SOLVER.IMS_PER_BATCH={ims_per_batch} does not split over "
            f"SOLVER.REFERENCE_WORLD_SIZE={reference_world_size} processes; expected a "
            "multiple of it"
        )
    if not reference_world_size and ims_per_batch % world_size:
        raise ConfigError(
            f"SOLVER.IMS_PER_BATCH={ims_per_batch} does not split over the {world_size} "
            f"processes launched; expected a multiple of {world_size} (or set "
            "SOLVER.REFERENCE_WORLD_SIZE to scale it)"
        )
