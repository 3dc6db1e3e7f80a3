class TritonPythonModel:
    """Stand-in: the golden test reads only the spec, not what the model does."""
