"""Post-call processing: the stages a call goes through after it is accepted."""
