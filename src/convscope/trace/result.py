"""The result of a trace: the numbers (from the engine) and the lines that derive them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from ..equations import render_sections
from .values import json_array


@dataclass
class Trace:
    """One traced layer application on one sample.

    ``y``, ``dw``, ``db``, ``dx`` are float64 arrays in the shapes the user gave (``dw``, ``db``
    are None for layers without them; the gradients are None without ``dy``). ``sections`` are
    ``(title, lines)`` pairs; ``steps`` is every line in order.
    """

    kind: str
    y: np.ndarray
    dw: Optional[np.ndarray] = None
    db: Optional[np.ndarray] = None
    dx: Optional[np.ndarray] = None
    sections: List[Tuple[str, List[str]]] = field(default_factory=list)

    @property
    def steps(self) -> List[str]:
        return [line for _, lines in self.sections for line in lines]

    def to_json(self) -> dict:
        """``{"y", "dw", "db", "dx", "steps"}``, numbers rounded to 12 significant digits."""
        return {"y": json_array(self.y), "dw": json_array(self.dw), "db": json_array(self.db),
                "dx": json_array(self.dx), "steps": self.steps}

    def text(self) -> str:
        """Plain text: a heading per section, then its lines (:func:`convscope.equations.render_sections`)."""
        return render_sections(self.sections)
