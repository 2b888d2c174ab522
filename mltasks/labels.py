"""Label sets: names, values, colours and left/right pairing.

The default set is method.md §7: background 0, three bones, nineteen muscles.
By default left and right share one value (as in the paper); ``sided=True``
gives each sided structure a ``_left`` and a ``_right`` value, and
``LabelSet.flip_lut`` maps every value to its mirror for a left-right flip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (name, kind, colour). Order defines the values 1..22 of the shared set.
DEFAULT_STRUCTURES: tuple[tuple[str, str, str], ...] = (
    ("pelvis", "bone", "#e8e3c9"),
    ("femur", "bone", "#fff2a8"),
    ("sacrum", "bone", "#c9b98b"),
    ("gluteus_maximus", "muscle", "#e6194b"),
    ("gluteus_medius", "muscle", "#3cb44b"),
    ("gluteus_minimus", "muscle", "#4363d8"),
    ("iliacus", "muscle", "#f58231"),
    ("obturator_externus", "muscle", "#911eb4"),
    ("obturator_internus", "muscle", "#46f0f0"),
    ("pectineus", "muscle", "#f032e6"),
    ("piriformis", "muscle", "#bcf60c"),
    ("psoas_major", "muscle", "#fabebe"),
    ("adductors", "muscle", "#008080"),
    ("biceps_femoris", "muscle", "#e6beff"),
    ("gracilis", "muscle", "#9a6324"),
    ("rectus_femoris", "muscle", "#800000"),
    ("sartorius", "muscle", "#aaffc3"),
    ("semimembranosus", "muscle", "#808000"),
    ("semitendinosus", "muscle", "#ffd8b1"),
    ("tensor_fasciae_latae", "muscle", "#000075"),
    ("vastus_lateralis_intermedius", "muscle", "#ff6f00"),
    ("vastus_medialis", "muscle", "#00b3ff"),
)

# Midline structures have no left/right twin.
MIDLINE = frozenset({"sacrum"})


@dataclass(frozen=True)
class Label:
    value: int
    name: str
    kind: str  # "bone" or "muscle"
    colour: str  # "#rrggbb"
    base: str  # the structure name without side
    side: str  # "", "left" or "right"


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of labels; value 0 (background) is implicit."""

    labels: tuple[Label, ...]

    @property
    def n_classes(self) -> int:
        """Number of classes including background."""
        return len(self.labels) + 1

    @property
    def names(self) -> list[str]:
        return [lab.name for lab in self.labels]

    def value_of(self, name: str) -> int:
        for lab in self.labels:
            if lab.name == name:
                return lab.value
        raise KeyError(f"no label named {name!r}; known: {', '.join(self.names)}")

    def values_of_kind(self, kind: str) -> list[int]:
        return [lab.value for lab in self.labels if lab.kind == kind]

    @property
    def flip_lut(self) -> np.ndarray:
        """(n_classes,) int array: value -> value of its mirror image (itself if unsided)."""
        lut = np.arange(self.n_classes, dtype=np.int64)
        by_key = {(lab.base, lab.side): lab.value for lab in self.labels}
        mirror = {"left": "right", "right": "left"}
        for lab in self.labels:
            if lab.side:
                lut[lab.value] = by_key[(lab.base, mirror[lab.side])]
        return lut

    def to_dict(self) -> dict:
        return {"labels": [lab.__dict__ for lab in self.labels]}

    @classmethod
    def from_dict(cls, data: dict) -> LabelSet:
        return cls(labels=tuple(Label(**d) for d in data["labels"]))


def default_label_set(*, sided: bool = False) -> LabelSet:
    """The label set of method.md §7.

    Args:
        sided: False (default) gives 22 structures whose left and right share a value;
            True gives left and right their own values (sacrum stays one label).
    """
    labels: list[Label] = []
    for name, kind, colour in DEFAULT_STRUCTURES:
        if not sided or name in MIDLINE:
            labels.append(Label(len(labels) + 1, name, kind, colour, name, ""))
            continue
        for side in ("left", "right"):
            labels.append(Label(len(labels) + 1, f"{name}_{side}", kind, colour, name, side))
    return LabelSet(labels=tuple(labels))
