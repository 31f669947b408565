"""The built-in live page: a <video> fed by Media Source Extensions from the WebSocket beside
it. No library: MSE needs a few lines, and nothing is fetched from the internet."""

from __future__ import annotations

import html

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Live: %(camera)s</title>
<style>
 body { margin: 0; background: #111; color: #ddd; font: 14px sans-serif; }
 video { width: 100vw; max-height: 95vh; background: #000; display: block; }
 #state { padding: 4px 8px; }
</style>
</head>
<body>
<video id="video" autoplay muted playsinline></video>
<div id="state">connecting to camera %(camera)s</div>
<script>
"use strict";
const video = document.getElementById("video");
const state = document.getElementById("state");
// The WebSocket sits under this page's path and takes the same signed query.
const url = new URL(location.href);
url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
url.pathname += "/ws";
let source = null, buffer = null, queue = [], codecs = "";

function say(text) { state.textContent = text; }

function pump() {
  if (!buffer || buffer.updating || queue.length === 0) return;
  try {
    buffer.appendBuffer(queue.shift());
  } catch (error) {
    say("cannot play: " + error);
  }
}

function keepLive() {
  // Stay at the live edge: behind by more than half a second (a stall, a skipped stretch
  // after falling behind), jump to the newest picture.
  const ranges = video.buffered;
  if (ranges.length === 0) return;
  const end = ranges.end(ranges.length - 1);
  if (end - video.currentTime > 0.5 || video.currentTime < ranges.start(ranges.length - 1)) {
    video.currentTime = Math.max(ranges.start(ranges.length - 1), end - 0.05);
  }
  if (buffer && !buffer.updating && video.currentTime - ranges.start(0) > 30) {
    buffer.remove(0, video.currentTime - 10);  // keep memory bounded on long viewing
  }
}

function start(newCodecs) {
  codecs = newCodecs;
  queue = [];
  source = new MediaSource();
  buffer = null;
  video.src = URL.createObjectURL(source);
  source.addEventListener("sourceopen", () => {
    const type = 'video/mp4; codecs="' + (codecs || "avc1.42E01E") + '"';
    buffer = source.addSourceBuffer(type);
    buffer.addEventListener("updateend", () => { keepLive(); pump(); });
    pump();
  }, { once: true });
}

const socket = new WebSocket(url);
socket.binaryType = "arraybuffer";
socket.onmessage = (event) => {
  if (typeof event.data === "string") {
    const message = JSON.parse(event.data);
    if (message.type === "init") { start(message.codecs); say("live"); }
    if (message.type === "end") say(message.message);
    return;
  }
  queue.push(event.data);
  pump();
};
socket.onclose = () => { if (state.textContent === "live") say("the stream closed"); };
video.addEventListener("canplay", () => video.play().catch(() => {}));
</script>
</body>
</html>
"""


def render_page(camera_id: str) -> str:
    return _PAGE % {"camera": html.escape(camera_id)}
