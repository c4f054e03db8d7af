"""The CCAI Platform (ex-UJET) call API surface."""
