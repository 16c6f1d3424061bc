"""The app on a real X server with Qt's ``xcb`` platform, as on a Linux desktop (issue 19, item 1).

The GUI suite runs offscreen, which needs none of the libraries a desktop window needs: ``comper`` once aborted at
start on a plain X session ("xcb-cursor0 ... is needed to load the Qt xcb platform plugin") while every test
passed. Here the plugin's real link map is checked, and the app is started on Xvfb (installed by ``.ci/setup``)
until its window is mapped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

PLUGIN_DIR = Path(__import__("PySide6").__file__).parent / "Qt" / "plugins" / "platforms"


def test_the_xcb_platform_plugin_finds_every_library_it_links():
    """Resolved from what ``libqxcb.so`` really links (ldd), not from a guessed list; `.ci/setup` installs them."""
    ldd = shutil.which("ldd")
    if ldd is None:
        pytest.skip("no ldd on this system")
    out = subprocess.run([ldd, str(PLUGIN_DIR / "libqxcb.so")], capture_output=True, text=True, check=True).stdout
    missing = [line.split()[0] for line in out.splitlines() if "not found" in line]
    assert missing == [], f"install the Debian packages that provide: {', '.join(missing)}"


@pytest.fixture
def x_display():
    """A fresh Xvfb server on a free display number (``-displayfd``), torn down after the test."""
    if shutil.which("Xvfb") is None or shutil.which("xwininfo") is None:
        pytest.skip("Xvfb / xwininfo not installed (bash .ci/setup installs them)")
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x720x24", "-nolisten",
                               "tcp"], pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as f:
            number = f.readline().strip()
        assert number.isdigit(), "Xvfb did not report its display"
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _comper_windows(display: str) -> list[str]:
    tree = subprocess.run(["xwininfo", "-root", "-tree"], env={**os.environ, "DISPLAY": display},
                          capture_output=True, text=True).stdout
    return re.findall(r"^\s+(0x[0-9a-f]+) \"Comper\"", tree, flags=re.MULTILINE)


def _map_state(display: str, window: str) -> str:
    info = subprocess.run(["xwininfo", "-id", window], env={**os.environ, "DISPLAY": display},
                          capture_output=True, text=True).stdout
    match = re.search(r"Map State: (\w+)", info)
    return match.group(1) if match else ""


def test_the_app_opens_its_window_on_a_real_x_server(x_display, tmp_path):
    env = {**os.environ, "DISPLAY": x_display, "QT_QPA_PLATFORM": "xcb", "COMPER_SESSIONS": str(tmp_path / "s"),
           "COMPER_SETTINGS": str(tmp_path / "settings.ini")}
    app = subprocess.Popen([sys.executable, "-m", "app.cli", "--demo", "--seconds", "3"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mapped = False
    deadline = time.monotonic() + 90
    try:
        while not mapped and app.poll() is None and time.monotonic() < deadline:
            mapped = any(_map_state(x_display, w) == "IsViewable" for w in _comper_windows(x_display))
            time.sleep(0.2)
        out, err = app.communicate(timeout=120)
    finally:
        if app.poll() is None:
            app.kill()
    assert "could not load the qt platform plugin" not in err.lower(), err
    assert mapped, f"no mapped 'Comper' window appeared; the app said: {err.strip()[-500:]}"
    assert app.returncode == 0, err
