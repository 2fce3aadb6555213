import uuid

from django.db import models


class Post(models.Model):
    slug = models.SlugField(unique=True)
    title = models.CharField(max_length=200)
    teaser = models.TextField()
    body = models.TextField()  # premium: shown to readers who paid
    price = models.PositiveIntegerField(default=50)  # KES


class Purchase(models.Model):
    """One click on "Unlock": its id is the Idempotency-Key and travels in Lipa's metadata."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    reader = models.CharField(max_length=50)
    post = models.ForeignKey(Post, on_delete=models.CASCADE)
    status = models.CharField(max_length=10, default="pending")  # pending | paid | refunded
    payment_id = models.CharField(max_length=40, blank=True)
    receipt = models.CharField(max_length=20, blank=True)  # M-Pesa receipt


class WebhookEvent(models.Model):
    """Lipa event ids already applied: a repeat delivery finds its id here and changes nothing."""

    id = models.CharField(max_length=40, primary_key=True)
    type = models.CharField(max_length=40)
