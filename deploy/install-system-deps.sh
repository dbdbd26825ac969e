#!/bin/sh
# Install the Debian packages the test suite and the testbed use, skipping what is already present.
# Idempotent; runs as root (no sudo needed) or through sudo when available. Used by `make test`.
#   prometheus       PromQL integration test (tests/dashboard/test_prometheus.py)
#   chromium         headless browser test of the web dashboard (tests/dashboard/test_browser.py)
#   chromium-driver  WebDriver for the same browser (other tools)
#   kcat             looking at the compose testbed's Kafka topics (deploy/README.md; it cannot parse Tansu's replies)
#   docker-compose   the compose testbed (deploy/)
#   python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-*  a real RTSP server for the stream tests
#                    (tests/edge/rtsp_server.py: H.264 via x264enc from plugins-ugly, MPEG-4 decode from libav)
set -eu

PACKAGES="prometheus chromium chromium-driver kcat docker-compose python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav"

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done

if [ -z "$missing" ]; then
    echo "install-system-deps: all present ($PACKAGES)"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install-system-deps: need root to install:$missing" >&2
    exit 1
fi

echo "install-system-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# refresh the package lists only if they are missing or older than a day
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages' -mtime -1 2>/dev/null | head -n 1)" ]; then
    $SUDO apt-get update -q
fi
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
