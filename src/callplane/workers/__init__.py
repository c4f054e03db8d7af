"""The offline plane's long-running runtimes (pipeline worker, webhook delivery, retention): they own their tasks."""
