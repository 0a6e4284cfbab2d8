"""IMS "Querying the Image Quota" (`GET /v1/cloudimages/quota`), from the count the Projects table keeps."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from diskport.settings import Settings
from diskport.stores.images import ImageStore


class QuotaResource(BaseModel):
    type: Literal["image"] = Field(default="image", description="image: the project's private images.")
    used: int = Field(description="Images counted against the quota: queued, saving and active ones.")
    quota: int = Field(description="How many private images the project may have.")
    min: int = 1
    max: int


class Quotas(BaseModel):
    resources: list[QuotaResource]


class QuotaView(BaseModel):
    """`{"quotas": {"resources": [{"type", "used", "quota", "min", "max"}]}}` (querying_the_image_quota.rst)."""

    quotas: Quotas


def image_quota(project_id: str, images: ImageStore, settings: Settings) -> QuotaView:
    """The project's private image quota: `used` is the counter imports and deletions change in their transactions.

    The quota is the service's MAX_PRIVATE_IMAGES; a project cannot raise it, so it is also the maximum.
    """
    quota = settings.max_private_images
    used = images.images_counted(project_id)
    return QuotaView(quotas=Quotas(resources=[QuotaResource(used=used, quota=quota, max=quota)]))
