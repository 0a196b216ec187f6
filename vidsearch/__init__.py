"""vidsearch: index folders of videos and search them with plain-language queries."""

__version__ = "0.1.0"
