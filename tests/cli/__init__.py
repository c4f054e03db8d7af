"""The `callplane` command run as a real process: serve on its defaults, demo-setup, kill -9."""
