"""A real RTSP server for the stream tests: Debian's GStreamer RTSP server (gst-rtsp-server, through
python3-gi), serving a video file re-encoded to H.264 at rtsp://127.0.0.1:PORT/cam, at its frame rate.

    /usr/bin/python3 tests/edge/rtsp_server.py VIDEO PORT

Runs under Debian's Python (python3-gi is a system package), not the project's venv. Each client gets
its own pipeline from the start of the file. Prints "ready" once the port is bound."""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    video, port = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{video}" ! decodebin ! videoconvert ! video/x-raw,format=I420 '
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate=2000 "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot bind 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
