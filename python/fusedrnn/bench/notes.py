"""The notes a run collects: all of them go into ``--verbose`` and the JSON; the few marked ``brief`` (an
anchor skipped, answers that stop the run) also into the default report."""

from __future__ import annotations


class Notes(list):  # a list, so that the JSON and the callers that only append see one
    """Distinct notes in the order they came; ``brief`` holds those the default report shows too."""

    def __init__(self) -> None:
        super().__init__()
        self.brief: list[str] = []

    def append(self, text: str) -> None:  # type: ignore[override]
        if text not in self:
            super().append(text)

    def add(self, text: str, *, brief: bool = False) -> None:
        self.append(text)
        if brief and text not in self.brief:
            self.brief.append(text)
