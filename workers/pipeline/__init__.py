"""The media pipeline of the worker: PyAV code that probes videos and runs plans of passes.

`planner.build_passes` binds a plan (`sparc_video.exports.plan`: the composition rules) to a probed
source; `render.run_video_pass` makes the video (decode → filter → encode, or a stream copy),
`thumbnail.run_thumbnail_pass` the stills. Everything here is synchronous and CPU-bound; the
worker runs it in a child process, off the event loop. Passes take a `ProgressFn`, which is
called often and is also where a cancellation (`JobCancelled`, raised from it) stops them.
Problems with the source or with an option that does not fit it are raised as
`sparc_video.core.errors.MediaError`.
"""

from workers.pipeline.media import MediaInfo, probe
from workers.pipeline.progress import PassProgress, ProgressFn
from workers.pipeline.thumbnail import Thumbnail, thumbnails
from workers.pipeline.transcode import transcode

__all__ = [
    "MediaInfo",
    "PassProgress",
    "ProgressFn",
    "Thumbnail",
    "probe",
    "thumbnails",
    "transcode",
]
