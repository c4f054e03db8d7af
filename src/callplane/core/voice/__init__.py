"""Programmable voice data: calls, dialogs, recordings, files, trunks, configurations (the live plane: `live/`)."""
