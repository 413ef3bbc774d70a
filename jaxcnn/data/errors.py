class DataError(ValueError):
    """Bad input data: a missing, corrupt or inconsistent file, bad labels, an empty split."""
