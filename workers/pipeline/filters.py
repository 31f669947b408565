"""One FFmpeg filter graph per pass: upright, scale, overlay watermarks, redact regions,
convert the format.

The graph is built from numbers only (sizes, positions, pixel format names from our own
tables): no user string ever becomes part of a filter description, so text such as
`movie=/etc/passwd` in a watermark is just pixels. Watermark pictures enter the graph as
frames pushed into a second `buffer` source, never as file names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
from av.filter import Graph
from av.filter.context import FilterContext
from av.video.frame import VideoFrame

from sparc_video.media.still import FULL_RANGE

# The watermark frame's time: before any video frame, so `overlay` uses it from the start and,
# with its input at EOF, repeats it for ever.
_OVERLAY_PTS = -(2**40)
# The overlay filter's working format for each output pixel format.
_OVERLAY_FORMATS = {
    "yuv420p": "yuv420",
    "yuv420p10le": "yuv420p10",
    "yuv422p": "yuv422",
    "yuv422p10le": "yuv422p10",
    "yuv444p": "yuv444",
    "yuv444p10le": "yuv444p10",
    "rgb24": "rgb",
}


@dataclass(frozen=True)
class Resize:
    """Scale to exactly width x height (bicubic)."""

    width: int
    height: int


@dataclass(frozen=True, eq=False)
class Overlay:
    """Draw an RGBA picture (alpha already scaled by the opacity) with its top left at x, y."""

    image: npt.NDArray[np.uint8] = field(repr=False)
    x: int
    y: int

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class Redact:
    """Blur (gaussian, `amount` = sigma in pixels) or pixelate (`amount` = block side) each
    region (x, y, width, height in pixels, even) of frames whose source time is within
    [start_s, end_s); end_s None: to the end."""

    regions: tuple[tuple[int, int, int, int], ...]
    mode: str  # "blur" | "pixelate"
    amount: int
    start_s: float = 0.0
    end_s: float | None = None

    @property
    def always(self) -> bool:
        return self.start_s <= 0 and self.end_s is None

    def active(self, at_s: float | None) -> bool:
        # A frame without a time is redacted: hiding too much beats showing what should not be.
        if at_s is None or self.always:
            return True
        return at_s >= self.start_s and (self.end_s is None or at_s < self.end_s)


@dataclass(frozen=True, eq=False)
class LiveOverlay:
    """An overlay whose picture follows the frame's source time (a running clock):
    `at(at_s)` gives a key (the same key: the same picture) and the Overlay to draw."""

    at: Callable[[float | None], tuple[str, Overlay]]


FilterStep = Resize | Overlay | Redact | LiveOverlay


class FilterChain:
    """Frames in, frames out, one for one: turned upright (display matrix), pixels made square,
    then `steps` in order, then converted to `pix_fmt`. Redactions limited to a span apply to
    the frames whose source time (`at_s`) is in it: the graph is rebuilt as one starts or ends.

    Output is limited-range video ("tv") for encoders, or with `full_range` full-range BT.601
    (JPEG and RGB pictures). The graph is rebuilt when the input changes (streams may switch
    resolution midway) and skipped when there is nothing to do; `threads` are its slice
    threads (0: FFmpeg's choice). `size` is what comes out.
    """

    def __init__(
        self,
        size: tuple[int, int],
        steps: Sequence[FilterStep],
        pix_fmt: str,
        *,
        full_range: bool = False,
        threads: int = 0,
    ) -> None:
        self._first = size
        self._threads = threads
        self._steps = list(steps)
        self._pix_fmt = pix_fmt
        self._full_range = full_range
        last = [s for s in self._steps if isinstance(s, Resize)]
        self.size = (last[-1].width, last[-1].height) if last else size
        self._key: tuple[Any, ...] | None = None
        self._graph: Graph | None = None
        self._source: FilterContext | None = None
        self._sink: FilterContext | None = None

    def __call__(
        self, frame: VideoFrame, sar: Fraction | None = None, at_s: float | None = None
    ) -> VideoFrame:
        """Filter `frame`; `at_s` is its time in source seconds (for timed redactions)."""
        turns = quarter_turns(frame)
        if (
            not self._steps
            and turns == 0
            and not self._full_range
            and frame.color_range != FULL_RANGE
            and (frame.width, frame.height) == self._first
            and frame.format.name == self._pix_fmt
        ):
            return frame
        # What the timed steps draw on this frame: redactions on or off, clock pictures. A
        # change rebuilds the graph (once a second for a clock: cheap next to encoding).
        steps: list[Resize | Overlay | Redact] = []
        state: list[object] = []
        for step in self._steps:
            if isinstance(step, LiveOverlay):
                text, overlay = step.at(at_s)
                steps.append(overlay)
                state.append(text)
            elif isinstance(step, Redact):
                active = step.active(at_s)
                if active:
                    steps.append(step)
                state.append(active)
            else:
                steps.append(step)
        key = (frame.width, frame.height, frame.format.name, frame.color_range, turns, sar, *state)
        if self._graph is None or key != self._key:
            self._build(frame, turns, sar, steps)
            self._key = key
        assert self._source is not None and self._sink is not None
        self._source.push(frame)
        out = self._sink.pull()
        assert isinstance(out, VideoFrame)
        # The sink's time base is not reliable; the frame's own timing is what callers use.
        out.pts = frame.pts
        out.time_base = frame.time_base
        out.duration = frame.duration
        return out

    def _build(
        self,
        frame: VideoFrame,
        turns: int,
        sar: Fraction | None,
        steps: list[Resize | Overlay | Redact],
    ) -> None:
        graph = Graph()
        # Slice threads for scale, overlay and blur (0: FFmpeg's choice, from the affinity).
        graph.threads = self._threads
        aspect = sar if sar is not None and sar > 0 else Fraction(1)
        time_base = str(frame.time_base or Fraction(1, 1000))
        source = graph.add(
            "buffer",
            video_size=f"{frame.width}x{frame.height}",
            pix_fmt=frame.format.name,
            time_base=time_base,
            pixel_aspect=f"{aspect.numerator}/{aspect.denominator}",
        )
        current = source

        def then(name: str, args: str | None = None) -> None:
            nonlocal current
            node = graph.add(name, args)
            current.link_to(node)
            current = node

        # Display matrices rotate counter-clockwise; undo that as the ffmpeg tool does.
        if turns == 1:
            then("transpose", "cclock")
        elif turns == 2:
            then("hflip")
            then("vflip")
        elif turns == 3:
            then("transpose", "clock")
        pushes: list[Callable[[], None]] = []
        # The first scale squares the pixels too; consecutive scales collapse into the last.
        pending: Resize | None = Resize(*self._first)
        if steps and isinstance(steps[0], Resize):
            pending = steps.pop(0)  # type: ignore[assignment]
        for step in steps:
            if isinstance(step, Resize):
                pending = step
                continue
            if pending is not None:
                then("scale", _scale_args(pending))
                pending = None
            if isinstance(step, Redact):
                current = _redact(graph, current, step, self._pix_fmt)
                continue
            overlay, push = _overlay(graph, step, time_base, self._pix_fmt)
            current.link_to(overlay, 0, 0)
            current = overlay
            pushes.append(push)
        final = _scale_args(pending) if pending is not None else "flags=bicubic"
        final += ":out_range=full:out_color_matrix=bt601" if self._full_range else ":out_range=tv"
        then("scale", final)
        then("setsar", "1")
        then("format", self._pix_fmt)
        then("buffersink")
        graph.configure()
        # The watermark inputs get their one picture now that the graph is configured.
        for push in pushes:
            push()
        self._graph, self._source, self._sink = graph, source, current


def _overlay(
    graph: Graph, step: Overlay, time_base: str, pix_fmt: str
) -> tuple[FilterContext, Callable[[], None]]:
    """An overlay filter whose second input is a buffer source holding the watermark.

    It blends in the output's own pixel format family: "auto" would go through RGB and back,
    changing every pixel of the frame a little, not just the watermark's.
    """
    picture = graph.add(
        "buffer",
        video_size=f"{step.width}x{step.height}",
        pix_fmt="rgba",
        time_base=time_base,
        pixel_aspect="1/1",
    )
    overlay = graph.add(
        "overlay",
        x=str(step.x),
        y=str(step.y),
        format=_OVERLAY_FORMATS.get(pix_fmt, "yuv420"),
        eof_action="repeat",
    )
    picture.link_to(overlay, 0, 1)
    image = step.image

    def push() -> None:
        frame = VideoFrame.from_ndarray(image, format="rgba")
        frame.pts = _OVERLAY_PTS
        frame.time_base = Fraction(time_base)
        picture.push(frame)
        picture.push(None)

    return overlay, push


def _redact(graph: Graph, current: FilterContext, step: Redact, pix_fmt: str) -> FilterContext:
    """split → per region: crop → gblur/pixelize → overlay back in place.

    Only the regions' pixels are read for their redaction (nothing from outside a region
    bleeds into it) and every pixel outside them passes through untouched.
    """
    split = graph.add("split", str(len(step.regions) + 1))
    current.link_to(split)
    main, output = split, 0
    for number, (x, y, width, height) in enumerate(step.regions, start=1):
        crop = graph.add("crop", f"w={width}:h={height}:x={x}:y={y}:exact=1")
        split.link_to(crop, number, 0)
        if step.mode == "pixelate":
            block = max(2, min(step.amount, width, height))
            hide = graph.add("pixelize", f"width={block}:height={block}:mode=avg")
        else:
            hide = graph.add("gblur", f"sigma={step.amount}")
        crop.link_to(hide)
        overlay = graph.add(
            "overlay", x=str(x), y=str(y), format=_OVERLAY_FORMATS.get(pix_fmt, "yuv420")
        )
        main.link_to(overlay, output, 0)
        hide.link_to(overlay, 0, 1)
        main, output = overlay, 0
    return main


def _scale_args(size: Resize) -> str:
    return f"w={size.width}:h={size.height}:flags=bicubic"


def quarter_turns(frame: VideoFrame) -> int:
    """Counter-clockwise quarter turns the frame's display matrix asks for (0-3)."""
    rotation = frame.rotation
    if not rotation or math.isnan(rotation):
        return 0
    return round(rotation / 90) % 4
