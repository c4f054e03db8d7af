"""Programmable voice: live calls, SIP trunks, media files and their control plane."""
