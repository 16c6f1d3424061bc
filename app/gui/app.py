"""Start the app: the QApplication, the window, and the scripted ``--demo`` run (timer, screenshot, report)."""

from __future__ import annotations

import sys
import time

GIL_SWITCH_S = 0.002
PNG = (".png",)


def _preload() -> None:
    """Import the heavy native modules now, before the event loop: importing one later on a background thread
    would hold the GIL through its C initialisation and stall the window."""
    import mido  # noqa: F401
    import numpy  # noqa: F401
    import onnxruntime  # noqa: F401

    from ..synth import fluid

    try:
        fluid.load()
    except Exception:  # noqa: BLE001 - no FluidSynth: the synth reports it (silent mode) when it starts
        pass


def close_on_signals(window) -> None:
    """Ctrl-C, SIGTERM and SIGHUP close the window as its close button does: the jam is stopped and saved and
    every note released (a SIGTERM used to end the process with the chord still sounding at a MIDI port). Qt's
    event loop runs no Python, so a timer hands the interpreter a moment to take the signal."""
    import signal

    from PySide6.QtCore import QTimer

    def handler(signum: int, frame: object) -> None:
        QTimer.singleShot(0, window.close)

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)
    window.signal_timer = QTimer(window)
    window.signal_timer.timeout.connect(lambda: None)
    window.signal_timer.start(200)


def save_png(image, path: str) -> bool:
    """``image`` (a QImage) as a PNG file, through the one output writer; False when Qt cannot encode it."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    from ..recording.output import write_file

    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        return False
    write_file(path, lambda f: f.write(data.data()), PNG)
    return True


def main(argv: list[str] | None = None) -> int:
    from ..engine.options import parse_args
    from ..recording.output import OutputError, check_target
    from .options import app_parser

    parser = app_parser()
    args = parse_args(parser, argv)  # --seconds against its range (engine/options.py)
    if args.screenshot and not (args.demo and args.seconds):
        parser.error("--screenshot needs --demo and --seconds")
    if args.screenshot:
        try:
            check_target(args.screenshot, PNG)
        except OutputError as e:
            parser.error(str(e))
    try:
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
    except ImportError as e:
        print(f"comper: the desktop app needs PySide6 ({e}); `pip install PySide6-Essentials`, or use the "
              f"terminal commands (`comper --help`)", file=sys.stderr)
        return 2
    _preload()
    # The GUI thread shares the GIL with the planner; hand it over every 2 ms instead of 5 so a paint waiting
    # for it is not held up by a busy planner (the engine's clock threads gain the same way).
    sys.setswitchinterval(GIL_SWITCH_S)
    from .main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Comper")
    app.setOrganizationName("Comper")
    window = MainWindow(demo=args.demo)
    close_on_signals(window)
    result = {"code": 0, "summary": None}

    if args.demo and args.seconds:
        def stop_jam() -> None:
            if not window.jam.stop():
                window.close()

        def saved_shot(ok: bool, grab_ms: float) -> None:
            print(f"screenshot {'written to' if ok else 'NOT written to'} {args.screenshot} (rendering the window "
                  f"took {grab_ms:.0f} ms, not counted as a stall)", flush=True)
            result["code"] = result["code"] or (0 if ok else 1)
            stop_jam()

        def finish() -> None:
            if not args.screenshot:
                stop_jam()
                return
            # Rendering the whole window into an image is the harness's work, not the app's: the stall meter
            # pauses for it, and the PNG is encoded off the GUI thread (a QImage may be, a QPixmap may not).
            window.stall.pause()
            t = time.perf_counter()
            image = window.grab().toImage()
            grab_ms = (time.perf_counter() - t) * 1000
            window.stall.resume()
            window.bg.submit("io", lambda: save_png(image, args.screenshot), lambda ok: saved_shot(ok, grab_ms),
                             lambda e: saved_shot(False, grab_ms))

        def stopped(summary: dict, saved) -> None:
            result["summary"] = (summary, saved)
            window.close()

        def failed(reason: str) -> None:
            print(f"comper: {reason}", file=sys.stderr)
            result["code"] = 1
            if window.jam.state == "idle":
                window.close()

        window.jam.started.connect(lambda info: QTimer.singleShot(int(args.seconds * 1000), finish))
        window.jam.stopped.connect(stopped)
        window.jam.failed.connect(failed)
    window.show()
    code = app.exec()
    if args.demo:
        if result["summary"] is not None:
            summary, saved = result["summary"]
            print(f"saved {saved}: {summary.get('frames', 0)} frames, {summary.get('chords', 0)} chords, "
                  f"{summary.get('deadline_misses', 0)} deadline misses; planning median "
                  f"{summary.get('plan_ms_median', 0):.2f} ms, p99 {summary.get('plan_ms_p99', 0):.2f} ms")
        st = window.stall
        print(f"{st.describe()}; during the jam, its start and save included ({st.max_total_ms:.0f} ms since the "
              f"window opened)", flush=True)
    return result["code"] or code
