"""The call event log: what happened to a call, in order, for webhooks and timelines."""
