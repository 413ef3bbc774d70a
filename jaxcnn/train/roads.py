"""Old import path of the input roads: they live in jaxcnn.train.feeds (host.py, device.py)."""

from jaxcnn.train.feeds import make_road
from jaxcnn.train.feeds.host import PipelineRoad, eval_batches, host_pipeline

__all__ = ["PipelineRoad", "eval_batches", "host_pipeline", "make_road"]
