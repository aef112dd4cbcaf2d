"""The ``actorkube`` command line."""
