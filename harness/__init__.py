"""asrfair: who does a speech recogniser fail, under which conditions, and how sure are we."""

__version__ = "0.1.0"
