"""The ``numbacnn`` command line (import name ``numbacnn_cli``)."""
