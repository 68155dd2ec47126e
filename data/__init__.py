"""Bundled data shipped with numbacnn: preset layer specs (``specs/*.spec``) and
``fashion-mnist-mini.h5``. Import name ``numbacnn_data``; read with
``importlib.resources.files("numbacnn_data")``."""
