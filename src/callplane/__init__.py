"""callplane: a self-hosted call platform behind the vendor APIs its clients already speak."""

__version__ = "0.1.0"
