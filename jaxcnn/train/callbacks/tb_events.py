"""TensorBoard event files read and cut back without TensorFlow: what a resumed run needs.

An event file is a sequence of TFRecords (length, its masked CRC, the serialized `Event`, its
masked CRC). A process killed while writing leaves a truncated last record; `read_records`
stops there. `cut_back(logdir, step, epochs)` drops what a run logged after the point it
resumes from, so a resumed run's scalars equal an uninterrupted run's (`scalars` reads them).
"""

from __future__ import annotations

import glob
import os
import struct

EVENT_FILES = "events.out.tfevents.*"


def _atomic_write(path: str, data: bytes) -> None:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")  # not an event file's name
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _pb():
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    return event_pb2, masked_crc32c


def read_records(path: str) -> list[bytes]:
    """The complete records of one event file (a torn or damaged tail is left out)."""
    _, masked_crc32c = _pb()
    with open(path, "rb") as f:
        data = f.read()
    out, pos = [], 0
    while pos + 12 <= len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        end = pos + 12 + length + 4
        if crc != masked_crc32c(header) or end > len(data):
            break
        out.append(data[pos + 12:pos + 12 + length])
        pos = end
    return out


def event_files(logdir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(glob.escape(logdir), EVENT_FILES)))


def scalars(logdir: str) -> dict[tuple[str, int], list[float]]:
    """`{(tag, step): [values in file order]}` of every scalar in `logdir`'s event files
    (more than one value for a (tag, step) means the run logged that step twice)."""
    event_pb2, _ = _pb()
    out: dict[tuple[str, int], list[float]] = {}
    for path in event_files(logdir):
        for record in read_records(path):
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if value.WhichOneof("value") == "simple_value":
                    out.setdefault((value.tag, int(event.step)), []).append(value.simple_value)
    return out


def _keep(event, step: int, epochs: int) -> bool:
    """Whether `event` belongs to the run up to global step `step` and `epochs` epochs done.

    Per-epoch scalars (`epoch_*`) count epochs, the others the global step; the one-off
    summaries (model text, image grid) are written at a run's very start, so a run that
    starts over from step 0 writes them again.
    """
    values = event.summary.value
    if not values:
        return True  # the file-version record
    if all(v.WhichOneof("value") == "simple_value" for v in values):
        if all(v.tag.startswith("epoch_") for v in values):
            return event.step < epochs
        return event.step <= step
    return step > 0


def cut_back(logdir: str, step: int, epochs: int) -> int:
    """Drop the events of `logdir` logged after global step `step` (`epochs` epochs done);
    each changed file is rewritten whole and atomically. Returns how many events went."""
    event_pb2, masked_crc32c = _pb()
    dropped = 0
    for stale in glob.glob(os.path.join(glob.escape(logdir), "." + EVENT_FILES + ".tmp")):
        os.remove(stale)  # a rewrite killed before its rename
    for path in event_files(logdir):
        records = read_records(path)
        kept = [r for r in records if _keep(event_pb2.Event.FromString(r), step, epochs)]
        if len(kept) == len(records) and os.path.getsize(path) == sum(len(r) + 16 for r in records):
            continue
        dropped += len(records) - len(kept)
        blob = b"".join(struct.pack("<Q", len(r)) + struct.pack("<I", masked_crc32c(struct.pack("<Q", len(r))))
                        + r + struct.pack("<I", masked_crc32c(r)) for r in kept)
        _atomic_write(path, blob)
    return dropped
