"""harness: architecture scaling studies in computer vision (see ../shared/DESIGN.md)."""

__version__ = "0.1.0"
