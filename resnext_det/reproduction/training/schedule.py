"""The one line both engines log at the start: the schedule this launch will run."""

from collections.abc import Sequence

from fvcore.common.config import CfgNode

__all__ = ["describe_schedule"]


def describe_schedule(
    world_size: int,
    scaled: CfgNode,
    reference: CfgNode,
    details: Sequence[str],
    reference_details: Sequence[str] = (),
) -> str:
    """The schedule after linear scaling to ``world_size`` processes, beside the config's.

    Args:
        world_size: processes of this launch.
        scaled: the config scaled to them (batch and lr).
        reference: the config as written, for ``SOLVER.REFERENCE_WORLD_SIZE`` processes.
        details: what else the launch runs (steps, iterations, epochs), already worded.
        reference_details: the same for the reference, where it differs.
    """
    solver, written = scaled.SOLVER, reference.SOLVER
    launch = [
        f"batch {solver.IMS_PER_BATCH} images ({solver.IMS_PER_BATCH // world_size} per process)",
        f"lr {solver.BASE_LR:g}",
        *details,
    ]
    as_written = [
        f"{written.REFERENCE_WORLD_SIZE or 'any number of'} processes",
        f"batch {written.IMS_PER_BATCH}",
        f"lr {written.BASE_LR:g}",
        *reference_details,
    ]
    return (
        f"effective schedule on {world_size} process(es): {', '.join(launch)} "
        f"(reference: {', '.join(as_written)})"
    )
