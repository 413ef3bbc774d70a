"""Old path of the weights-folder functions; they live in `jaxcnn.checkpoint.weights` (one format)."""

from jaxcnn.checkpoint.weights import read_metadata, restore_variables, save_variables

__all__ = ["read_metadata", "restore_variables", "save_variables"]
