"""The one internal call model: calls from every surface, their custom data and their lookups."""
