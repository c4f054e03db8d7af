"""/metrics scraped on real servers: the series move when calls are ingested, processed and placed."""
