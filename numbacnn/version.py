"""numbacnn's version, on the lowest floor so that model and ONNX files can stamp it."""

__version__ = "0.1.0"
