"""One file per documented experiment: `get_config()` plus a call into jaxcnn.experiment."""
