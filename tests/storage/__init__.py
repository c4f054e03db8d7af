"""Recording storage: one contract suite for every driver, against moto's S3 server on loopback."""
