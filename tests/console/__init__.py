"""Browser tests of the web console: Debian's chromium driven by Playwright against a real server."""
