"""The live-call plane: stateful, runs where the call engine runs (calls, media, dialogs, relay, runtimes)."""
