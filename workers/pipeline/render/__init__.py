"""The video pass: one read of the source that makes the export's video, streaming.

Either decode → filter (upright, scale, watermarks) → encode, with exact trimming and frame
rate conversion on the way; or a stream copy (remux, fast trim) of the packets, audio copied or
re-encoded. One frame (or packet) in, one out: memory stays flat whatever the video's length.
"""

from __future__ import annotations

import av

from sparc_video.media.safe_open import open_file
from workers.pipeline.cores import ThreadBudget, job_budget
from workers.pipeline.media import MediaInfo, probe
from workers.pipeline.progress import ProgressFn, ProgressReporter
from workers.pipeline.render.copy import CopyPass
from workers.pipeline.render.encode import EncodePass
from workers.pipeline.render.spec import VideoEncode, VideoPass, VideoResult
from workers.pipeline.render.streams import close_after_failure

__all__ = ["VideoEncode", "VideoPass", "VideoResult", "run_video_pass"]


def run_video_pass(
    p: VideoPass, progress: ProgressFn, source: MediaInfo, budget: ThreadBudget | None = None
) -> VideoResult:
    """Run `p` with the threads of `budget` (None: every core this process may use);
    `progress` is called at least every REPORT_INTERVAL_S and once at 100%, and whatever it
    raises stops the pass. `dst` is removed after any failure."""
    end_s = source.duration_s if p.end_s is None else min(p.end_s, source.duration_s)
    reporter = ProgressReporter(progress, max(0.0, end_s - p.start_s))
    reporter.start()
    options = {"movflags": "+faststart"} if p.container.edit_lists else {}
    first_key: float | None = None
    try:
        with open_file(p.src) as inp:
            out = av.open(str(p.dst), "w", format=p.container.format, container_options=options)
            try:
                if p.video is None:
                    first_key = CopyPass(inp, out, p, p.end_s, reporter).run()
                else:
                    threads = budget or job_budget()
                    EncodePass(inp, out, p, p.video, p.end_s, reporter, threads).run()
            except BaseException:
                close_after_failure(out)
                raise
            out.close()
    except BaseException:
        p.dst.unlink(missing_ok=True)
        raise
    reporter.finish()
    return VideoResult(probe(p.dst), first_key, p.video.encoder.encoder if p.video else "")
