"""Every colour, size and rate of the app in one place, so the look can be tuned without reading the widgets."""

from __future__ import annotations

# --- the view's palette (dark stage, warm melody, cool accompaniment) ----------------------------------------
BACKGROUND = "#15171c"
LISTEN_TINT = "#1d2230"  # the listen-first intro: the player alone
BEAT_LINE = "#242832"
BAR_LINE = "#3b4250"
NOW_LINE = "#f4f1e8"
GUTTER_TEXT = "#8a92a3"
MELODY = "#ffab40"  # the player's notes
CHORD = "#4fc3f7"  # the AI's chord tones
BASS = "#3d7fd9"  # the AI's bass note
CHORD_LABEL = "#e6f6ff"
KEY_WHITE = "#f2f0ea"
KEY_BLACK = "#22252b"
KEY_EDGE = "#6c7180"
LIGHT_OFF = "#3a3d45"
LIGHT_CONNECTED = "#2e7d32"
LIGHT_ACTIVE = "#76ff03"
LIGHT_LOST = "#e53935"
TEXT_DIM = "#8a92a3"

# Alpha (0-255) of a chord block by state: sounded, promised (committed) and still tentative.
ALPHA_PLAYED = 150
ALPHA_COMMITTED = 235
ALPHA_TENTATIVE = 70
ALPHA_NOTE = 230

# --- geometry --------------------------------------------------------------------------------------------------
LOW_PITCH = 36  # C2: the view's lowest key (the bass range starts here)
HIGH_PITCH = 96  # C7
KEYBOARD_HEIGHT = 84
GUTTER_WIDTH = 66  # left margin for bar numbers and chord symbols
PAST_BEATS = 6  # how much of the past stays visible under the now line
FUTURE_BEATS = 10  # how far ahead the waterfall shows the plan
NOTE_RADIUS = 3
BANNER_CHORD_PT = 40  # the current chord, readable from the piano bench
BANNER_NEXT_PT = 22
BANNER_COUNTER_PT = 22
LIGHT_SIZE = 12
SIDE_PANEL_WIDTH = 340
WINDOW_SIZE = (1280, 800)

# --- rates -----------------------------------------------------------------------------------------------------
JAM_FPS = 60  # view refresh while a jam or replay runs
IDLE_FPS = 15  # between jams: only the keyboard lights change
HEALTH_HZ = 4  # the health line
LIGHT_FLASH_S = 0.12  # how long an activity light stays lit after a note
DEVICE_POLL_S = 2.0  # MIDI port scan / reconnection check
STALL_TICK_MS = 10  # the stall meter's timer period
