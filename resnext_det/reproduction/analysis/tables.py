"""Our computed complexity beside the paper's Tables 1, 2, 4 and 7."""

from dataclasses import dataclass, field
from typing import Any, Optional

from ...modeling import ResNeXtSpec
from .complexity import cifar_complexity, classifier_complexity, template_complexity
from .paper import (
    PAPER_CIFAR,
    PAPER_IMAGENET,
    PAPER_TABLE_2,
    PAPER_TABLE_2_GFLOPS,
    PAPER_TABLE_2_PARAMS,
)

__all__ = ["Table", "paper_tables", "render_markdown"]


@dataclass
class Table:
    """A titled table: column names and rows of values (None prints as '-')."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def as_records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


def _diff(ours: float, paper: Optional[float]) -> Optional[str]:
    if paper is None:
        return None
    return f"{ours - paper:+.2f} ({100 * (ours - paper) / paper:+.1f}%)"


def _paper(value: Optional[float], approximate: bool) -> Optional[str]:
    if value is None:
        return None
    return f"~{value:g}" if approximate else f"{value:g}"


def paper_tables() -> list[Table]:
    """Compute every network of Tables 1-4 and 7 and set the paper's numbers beside them.

    ImageNet networks at 224 px (1000 classes), CIFAR networks at 32 px (10 classes),
    Table 2's templates as one identity-shortcut conv2 block on a 56 x 56 map.
    """
    columns = [
        "table", "model", "template",
        "params (M)", "paper", "difference",
        "GFLOPs", "paper", "difference",
    ]  # fmt: skip
    imagenet = Table("ImageNet-1K classifiers at 224 px (Tables 1, 3, 4)", list(columns))
    for model in PAPER_IMAGENET:
        spec = ResNeXtSpec(model.depth, model.cardinality, model.width, norm="BN")
        ours = classifier_complexity(spec)
        imagenet.rows.append(
            [
                model.table, f"{model.name}", model.template,
                round(ours.params_m, 2), _paper(model.params_m, model.approximate),
                _diff(ours.params_m, model.params_m),
                round(ours.gflops, 2), _paper(model.gflops, model.approximate),
                _diff(ours.gflops, model.gflops),
            ]
        )  # fmt: skip

    cifar = Table("CIFAR-10 ResNeXt-29 at 32 px (Table 7)", list(columns))
    for model in PAPER_CIFAR:
        spec = ResNeXtSpec(cardinality=model.cardinality, bottleneck_width=model.width, norm="BN")
        ours = cifar_complexity(spec)
        cifar.rows.append(
            [
                model.table, model.name, model.template,
                round(ours.params_m, 2), _paper(model.params_m, False),
                _diff(ours.params_m, model.params_m),
                round(ours.gflops, 2), None, None,
            ]
        )  # fmt: skip

    template = Table(
        "conv2 templates of ~equal complexity (Table 2), one block on 56 x 56",
        [
            "C", "d", "group conv width", "paper",
            "params (k)", "paper", "GFLOPs", "paper",
        ],
    )  # fmt: skip
    for (cardinality, width), group_width in PAPER_TABLE_2.items():
        ours = template_complexity(cardinality, width)
        template.rows.append(
            [
                cardinality, width, cardinality * width, group_width,
                round(ours.params / 1e3, 1), f"~{PAPER_TABLE_2_PARAMS / 1e3:g}",
                round(ours.gflops, 3), f"~{PAPER_TABLE_2_GFLOPS:g}",
            ]
        )  # fmt: skip
    return [imagenet, template, cifar]


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def render_markdown(tables: list[Table]) -> str:
    """The tables as markdown, each under its title."""
    parts = []
    for table in tables:
        lines = [
            f"### {table.title}",
            "",
            "| " + " | ".join(table.columns) + " |",
            "|" + "---|" * len(table.columns),
        ]
        lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"
