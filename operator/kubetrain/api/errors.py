"""The one error type for specs that cannot run.

The operator turns it into a `Failed` condition with reason `InvalidSpec` and an Event, so the
message is what a user reads in `kubectl describe`: it names the field and says how to fix it.
"""

from __future__ import annotations


class InvalidSpec(ValueError):
    """A TrainingJob spec the operator will not run.

    `field` is a JSON path from the object root (``spec.accelerator.perNode``); `message` says what
    is wrong and how to fix it, and always contains `field` so it reads well on its own.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message if field in message else f"{field}: {message}"
        super().__init__(self.message)

    def __reduce__(self) -> tuple[type[InvalidSpec], tuple[str, str]]:
        return (type(self), (self.field, self.message))
