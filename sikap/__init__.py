"""sikap: topic and stance classification of Indonesian news with IndoBERT-family encoders."""

__version__ = "0.1.0"
