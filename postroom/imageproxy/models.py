"""A member's choice to always show the remote images of one sender (through the proxy).

The sender is stored as a blind index of the address (a keyed HMAC under the organization's
keys, ``core.keys``), never as the address: the table tells an operator which members trust
some sender, not who that sender is.
"""

from __future__ import annotations

from django.db import models


class TrustedImageSender(models.Model):
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    membership = models.ForeignKey("orgs.Membership", on_delete=models.CASCADE, related_name="+")
    sender_index = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["membership", "sender_index"], name="trusted_image_sender_unique")]
