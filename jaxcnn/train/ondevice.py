"""Old import path of the on-device road: it lives in jaxcnn.train.feeds.device."""

from jaxcnn.train.feeds.device import (ROADS, DeviceRoad, choose_road, device_memory_bytes, fits_on_device,
                                       make_chunk_fn, normalize_images)

__all__ = ["DeviceRoad", "ROADS", "choose_road", "device_memory_bytes", "fits_on_device", "make_chunk_fn",
           "normalize_images"]
