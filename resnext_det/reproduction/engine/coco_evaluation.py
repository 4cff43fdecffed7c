"""COCO evaluation with the fastest correct COCOeval available.

Detectron2's ``COCOEvaluator`` computes AP with pycocotools' pure-Python ``COCOeval``
unless its own C++ extension is built (it is not, for the registry wheel). When
``faster-coco-eval`` is installed, :class:`COCOEvaluator` here computes the same numbers
with its C++ ``COCOeval_faster`` (the tests hold the two side by side); everything else is
Detectron2's evaluator.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional

from detectron2.evaluation import COCOEvaluator as DetectronCOCOEvaluator
from detectron2.evaluation import coco_evaluation
from pycocotools.cocoeval import COCOeval

from ...utils.errors import ConfigError

try:
    from faster_coco_eval import COCOeval_faster
except ImportError:  # optional: pycocotools then
    COCOeval_faster = None

__all__ = ["COCOEVAL_IMPLEMENTATIONS", "COCOEvaluator", "fastest_cocoeval"]

COCOEVAL_IMPLEMENTATIONS = ("auto", "faster-coco-eval", "pycocotools")


def fastest_cocoeval(implementation: str = "auto") -> type:
    """The COCOeval class to use: 'auto' takes faster-coco-eval when it is installed."""
    if implementation not in COCOEVAL_IMPLEMENTATIONS:
        raise ConfigError(
            f"implementation={implementation!r} is unknown; expected one of "
            f"{COCOEVAL_IMPLEMENTATIONS}"
        )
    if implementation == "pycocotools" or (implementation == "auto" and not COCOeval_faster):
        return COCOeval
    if COCOeval_faster is None:
        raise ConfigError(
            "implementation='faster-coco-eval' but the package is not installed; expected "
            "`pip install faster-coco-eval` or implementation='pycocotools'"
        )
    return COCOeval_faster


@contextmanager
def _coco_evaluation_uses(cocoeval: type) -> Iterator[None]:
    # Detectron2's COCOEvaluator takes its COCOeval class from its module's globals inside
    # _eval_predictions, with no parameter for it; swapping the name for the duration of
    # the call chooses it without copying the method.
    saved = coco_evaluation.COCOeval
    coco_evaluation.COCOeval = cocoeval
    try:
        yield
    finally:
        coco_evaluation.COCOeval = saved


class COCOEvaluator(DetectronCOCOEvaluator):
    """Detectron2's ``COCOEvaluator``, computing AP with the fastest correct COCOeval.

    Args:
        dataset_name: a registered dataset.
        output_dir: where predictions are saved (None: not saved).
        implementation: 'auto' (faster-coco-eval when installed, else pycocotools),
            'faster-coco-eval' or 'pycocotools'.
        **kwargs: Detectron2's other ``COCOEvaluator`` arguments.
    """

    def __init__(
        self,
        dataset_name: str,
        output_dir: Optional[str] = None,
        implementation: str = "auto",
        **kwargs,
    ):
        kwargs["use_fast_impl"] = False  # Detectron2's own C++ COCOeval is not built here
        super().__init__(dataset_name, output_dir=output_dir, **kwargs)
        self.cocoeval = fastest_cocoeval(implementation)

    def _eval_predictions(self, predictions, img_ids=None):
        self._logger.info(f"COCOeval implementation: {self.cocoeval.__module__}")
        with _coco_evaluation_uses(self.cocoeval):
            super()._eval_predictions(predictions, img_ids)
