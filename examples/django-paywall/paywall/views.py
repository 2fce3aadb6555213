import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .models import Post, Purchase, WebhookEvent


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """Lipa-Signature `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>`."""
    parts = dict(p.strip().split("=", 1) for p in header.split(",") if "=" in p)
    t = parts.get("t", "")
    if not t.isdecimal() or abs(time.time() - int(t)) > tolerance:  # replay window
        return False
    expected = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), parts.get("v1", "").encode())  # constant time


def index(request):
    return render(request, "index.html", {"posts": Post.objects.order_by("title")})


@require_POST
def login(request, slug):  # a reader is just a name kept in the (signed cookie) session
    request.session["reader"] = request.POST["name"].strip()[:50]
    return redirect("post", slug)


def post(request, slug, waiting=False):
    post, reader = get_object_or_404(Post, slug=slug), request.session.get("reader")
    paid = Purchase.objects.filter(post=post, reader=reader, status="paid").first()
    return render(request, "post.html", {"post": post, "reader": reader, "paid": paid, "waiting": waiting})


@require_POST
def unlock(request, slug):
    post, reader = get_object_or_404(Post, slug=slug), request.session.get("reader")
    if not reader:
        return redirect("post", slug)
    purchase = Purchase.objects.create(reader=reader, post=post)
    session = {"amount": post.price, "account_reference": f"post-{post.pk}", "description": "Premium post",
               "success_url": settings.APP_URL + reverse("returned", args=[purchase.pk]),
               "cancel_url": settings.APP_URL + reverse("post", args=[slug]),
               "webhook_url": settings.APP_URL + reverse("webhook"),
               "metadata": {"purchase": str(purchase.pk), "reader": reader, "post": slug}}
    headers = {"Authorization": f"Bearer {settings.LIPA_API_KEY}", "Content-Type": "application/json",
               "Idempotency-Key": f"purchase-{purchase.pk}"}
    request_ = urllib.request.Request(f"{settings.LIPA_URL}/v1/checkout-sessions", json.dumps(session).encode(), headers)
    try:
        with urllib.request.urlopen(request_, timeout=15) as answer:
            return redirect(json.load(answer)["url"])  # Lipa's hosted checkout page
    except urllib.error.URLError as e:
        return HttpResponse(f"Payments are unavailable right now ({e}); please try again.", status=502)


def returned(request, pk):
    """The success_url. Coming back proves nothing: only the signed webhook unlocks."""
    purchase = get_object_or_404(Purchase, pk=pk)
    if purchase.status != "pending":
        return redirect("post", purchase.post.slug)
    return post(request, purchase.post.slug, waiting=True)


@csrf_exempt
@require_POST
def webhook(request):
    if not verify(settings.LIPA_WEBHOOK_SECRET, request.headers.get("Lipa-Signature", ""), request.body):
        return HttpResponseBadRequest("bad signature")
    event = json.loads(request.body)
    with transaction.atomic():
        _, new = WebhookEvent.objects.get_or_create(id=event["id"], defaults={"type": event["type"]})
        if not new:
            return HttpResponse("duplicate")
        payment = event["data"].get("payment") or event["data"]  # refund events carry the payment inside
        mine = Purchase.objects.filter(pk=(payment.get("metadata") or {}).get("purchase"))
        if event["type"] == "payment.paid":  # once: only a pending purchase turns paid
            mine.filter(status="pending").update(status="paid", payment_id=payment["id"], receipt=payment["receipt"] or "")
        elif event["type"] == "payment.receipt_added":
            mine.update(receipt=payment["receipt"])
        elif event["type"] == "refund.succeeded":
            mine.update(status="refunded")
    return HttpResponse("ok")
