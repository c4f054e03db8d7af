"""The vendor API surfaces: thin adapters from each vendor's wire format onto the core services and back."""
