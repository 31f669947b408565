"""A controllable RTSP test camera, for tests of recording and live view and for operators
checking an install (`sparc-video test-camera`).

It streams live, at the camera's own pace, frames that each carry their index and capture time
(camera clock) as black and white blocks that survive compression; `read_stamp` reads them back
from a decoded frame. RTCP sender reports carry the camera clock, which a test sets wrong on
purpose (an offset, a rate error); RTP times count the camera's media clock, which may run
`rtp_ppm` off its wall clock as a real camera's crystal does. RTP goes interleaved in the RTSP
TCP connection.

    with TestCamera(fps=25, size=(320, 180), rtcp=True,
                    clock=CameraClock(offset_s=3600, ppm=50)) as cam:
        av.open(cam.url, options={"rtsp_transport": "tcp"})
        read_stamp(frame)            # FrameStamp(index, capture_time_us); NoStamp if none
        cam.drop()                   # close every connection (new ones are accepted)
        cam.stall(); cam.resume()    # stop sending, connections open; send again from a keyframe
        cam.set_size(640, 360)       # new SPS/PPS in band at the next (key)frame; new SDP
        cam.restart(fps=10, audio="aac")  # reboot: connections closed, indices from 0
        cam.set_auth(Auth("u", "p", schemes=("digest",)))  # or TestCamera(auth=...)
        cam.refuse(401); cam.refuse(None)
        cam.redirect("rtsp://elsewhere/cam"); cam.redirect(None)  # DESCRIBE answers 302
        cam.withhold_keyframes()     # send only the frames between keyframes
        cam.connections, cam.total_connections, cam.playing, cam.total_plays, cam.requests

Constructor: `TestCamera(*, fps=25, size=(320, 180), codec="h264" | "h265",
audio=None | "aac" | "pcmu", rtcp=True, clock=None, pace="realtime" | "fast", auth=None,
text=True, gop_s=1.0, threads=1, rtp_offsets=None, loop_s=None, bitrate=None,
host="127.0.0.1", port=0, path="/cam")`. `loop_s`: encode that many seconds once and loop them,
for sizes or codecs too slow to encode live (H.265 at 1080p), or for many cameras in one process
(cameras with the same settings share one loop, encoded once); the pictures' stamps then repeat
per loop. `bitrate`: bits per second the encoder aims at, noise in the picture to spend them on.
`pace="fast"` sends as fast as the slowest reader takes, the camera clock advancing one frame
interval per frame (a long run in little time); it waits while nobody plays. A viewer that
joins gets the live stream from the next keyframe (one is forced when a viewer starts).
"""

from sparc_video.simulator.camera import PACES, TestCamera
from sparc_video.simulator.clock import CameraClock
from sparc_video.simulator.rtsp import AUTH_SCHEMES, Auth
from sparc_video.simulator.source import AUDIO_CODECS, VIDEO_CODECS
from sparc_video.simulator.stamp import FrameStamp, NoStamp, read_stamp

__all__ = [
    "AUDIO_CODECS",
    "AUTH_SCHEMES",
    "PACES",
    "VIDEO_CODECS",
    "Auth",
    "CameraClock",
    "FrameStamp",
    "NoStamp",
    "TestCamera",
    "read_stamp",
]
