"""Measurements of generated (or ground-truth) chords against melodies: harmony, diversity, timing."""
