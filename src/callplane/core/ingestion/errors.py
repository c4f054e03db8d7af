"""Ingestion errors; each surface renders them in its own vocabulary."""

from __future__ import annotations

from callplane.errors import Conflict, PermissionDenied


class CampaignNotAccessible(PermissionDenied):
    """You do not have access to this advertiser."""


class CampaignNotExternal(PermissionDenied):
    """campaign must be for external calls only"""


class CampaignWithoutTranscription(PermissionDenied):
    """campaign must have transcription enabled"""


class ExternalIdReused(Conflict):
    """external_call_unique_id has already been used with different call details"""
