"""Old import path of the TensorBoard callback: it lives in jaxcnn.train.callbacks.tensorboard."""

from jaxcnn.train.callbacks.tensorboard import SummaryWriter, TensorBoard, image_grid

__all__ = ["SummaryWriter", "TensorBoard", "image_grid"]
