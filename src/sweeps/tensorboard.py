"""The TensorBoard writer of a summary: its plots and text as one event file beside the jobs' runs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def write_tensorboard(folder: Path, images: Sequence[Path], markdown: str, wall_time: float) -> Path:
    """Heatmaps (image tab) and the summary (text tab) as one TensorBoard run `summary/tb` beside
    the jobs' runs, so `tensorboard --logdir <sweep folder>` shows them with the HParams tab.
    A fixed file name and wall time make the file the same on every re-run."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.summary.writer.record_writer import RecordWriter

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "events.out.tfevents.summary"
    values = []
    for img in images:
        data = img.read_bytes()
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # PNG IHDR
        values.append(
            Summary.Value(
                tag=f"sweep/{img.stem}",
                image=Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=data),
            )
        )
    text_meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text"))
    values.append(
        Summary.Value(
            tag="sweep/summary",
            metadata=text_meta,
            tensor=TensorProto(
                dtype=7,  # DT_STRING
                string_val=[markdown.encode()],
                tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]),
            ),
        )
    )
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        writer = RecordWriter(f)
        writer.write(Event(wall_time=wall_time, file_version="brain.Event:2").SerializeToString())
        writer.write(Event(wall_time=wall_time, step=0, summary=Summary(value=values)).SerializeToString())
        writer.flush()
    os.replace(tmp, path)
    return path
