"""Re-encode one video as a TranscodeOp asks: a one-operation plan, for callers and tests that
want just that (the export child runs whole plans)."""

from __future__ import annotations

from pathlib import Path

from sparc_video.core.errors import MediaError
from sparc_video.exports.operations import TranscodeOp
from sparc_video.exports.plan import compile_plan
from sparc_video.media import codecs
from workers.pipeline.media import MediaInfo, probe
from workers.pipeline.progress import ProgressFn
from workers.pipeline.render import VideoPass, run_video_pass


def transcode(src: Path, dst: Path, op: TranscodeOp, progress: ProgressFn) -> MediaInfo:
    """Encode `src` to `dst` (MP4) as `op` asks; returns the probe of the result.

    `progress` is called at least every REPORT_INTERVAL_S and once at 100%; whatever it raises
    stops the transcode, and `dst` is removed then, as after any failure.
    """
    from workers.pipeline.planner import build_passes

    if op.codec and codecs.video_codec(op.codec) is None:
        raise MediaError(
            f"output codec {op.codec!r} is not supported; available: "
            + ", ".join(codecs.VIDEO_CODECS),
            reason="UNSUPPORTED_CODEC",
        )
    if op.preset and op.preset not in codecs.PRESETS:
        raise MediaError(
            f"preset {op.preset!r} is not supported; use one of: {', '.join(codecs.PRESETS)}",
            reason="UNSUPPORTED_PRESET",
        )
    info = probe(src)
    (video,) = build_passes(compile_plan([op]), src, info, dst.parent, {})
    assert isinstance(video, VideoPass)
    video = VideoPass(**{**video.__dict__, "dst": dst})
    return run_video_pass(video, progress, info).info
