"""harness: architecture scaling studies in computer vision (see DESIGN in the docs)."""

from harness.version import __version__

__all__ = ["__version__"]
