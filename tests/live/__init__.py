"""Tests of the live-call plane: the engine contract (fake and real) and the control plane on the fake engine."""
