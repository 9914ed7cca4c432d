"""Heavy dependencies are imported where they are used, and a missing one names its extra."""

import importlib
from types import ModuleType


class MissingDependency(ImportError):
    pass


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or fail with the pip command that installs the extra providing it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependency(
            f"{module} is needed here but is not installed ({e}). Install it with: pip install 'sluice[{extra}]'"
        ) from None
