"""Call tracking: campaign promo numbers route inbound calls; the live-call view of calls in progress."""
