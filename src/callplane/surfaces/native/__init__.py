"""callplane's own API (/v1): calls, jobs, transcripts, signals and voice, in callplane's own shapes."""
