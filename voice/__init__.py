"""Speech toolkit: audio in, text events out; text in, audio out. Never imports `sessions`."""
