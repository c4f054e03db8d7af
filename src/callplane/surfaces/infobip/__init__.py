"""The Infobip Calls API surface (`/calls/1/...`): wire format in and out, core services underneath."""
