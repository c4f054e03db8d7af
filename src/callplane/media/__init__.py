"""The media plane: SIP signalling (sippy), RTP, codecs, jitter buffers and the call engine on one 20 ms clock."""
