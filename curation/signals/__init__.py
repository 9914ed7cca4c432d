"""Scorers by name, for use from config. Modules here import nothing heavy at import time."""

from curation.signals.alt_text import AltText
from curation.signals.image_header import ImageHeader

SIGNALS = {cls.name: cls for cls in (ImageHeader, AltText)}
