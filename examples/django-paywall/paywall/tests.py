"""End to end: a reader pays for a premium post through a real `lipa serve` (simulator mode).

Lipa is started by the test (LIPA_BIN), Django's LiveServerTestCase serves the app on a free
port, and everything a reader, Lipa or the shop's staff do goes over plain HTTP.
"""

import hashlib
import hmac
import html
import http.cookiejar
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from django.test import LiveServerTestCase, SimpleTestCase, override_settings

from .models import Purchase, WebhookEvent
from .views import verify

DEADLINE = 30  # seconds, for everything we wait for
SLUG = "nyama-choma"  # the post the migration adds
DELAYED_PHONE = "254711222333"  # scripted below: approved, but M-Pesa's callback comes 4 s late


def wait_for(what, check, timeout=DEADLINE):
    end = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.3)
    return value


def post_json(url, body, headers=None):
    """POST raw bytes (or JSON); returns (status, text) for any status."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sign(secret, body, t=None):
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class Browser:
    """A reader's browser without JavaScript: cookies, redirects, and forms read from the HTML."""

    def __init__(self):
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.url = self.html = None

    def open(self, url, form=None):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        with self.opener.open(url, data, timeout=15) as answer:
            self.url, self.html = answer.url, answer.read().decode()
        return self.html

    def submit(self, action_part, **fields):
        """Fill in the page's form whose action contains `action_part` and send it."""
        for attrs, inner in re.findall(r"<form([^>]*)>(.*?)</form>", self.html, re.S):
            action = html.unescape(re.search(r'action="([^"]*)"', attrs).group(1))
            if action_part in action:
                assert re.search(r'method="post"', attrs, re.I), f"form {action} is not a POST form"
                values = {}
                for tag in re.findall(r"<input[^>]*>", inner):
                    name, value = re.search(r'name="([^"]*)"', tag), re.search(r'value="([^"]*)"', tag)
                    if name:
                        values[name.group(1)] = html.unescape(value.group(1)) if value else ""
                missing = set(fields) - set(values)
                assert not missing, f"form {action} has no field {missing}: {inner}"
                return self.open(urllib.parse.urljoin(self.url, action), {**values, **fields})
        raise AssertionError(f"no form with action containing {action_part!r} on {self.url}:\n{self.html}")


class PaywallTest(LiveServerTestCase):
    host = "127.0.0.1"

    @classmethod
    def setUpClass(cls):
        lipa = os.environ.get("LIPA_BIN")
        if not lipa or not os.access(lipa, os.X_OK):
            raise RuntimeError(f"LIPA_BIN must name the built lipa binary (got {lipa!r})")
        tmp = tempfile.mkdtemp(prefix="lipa-django-paywall-")
        cls.addClassCleanup(shutil.rmtree, tmp, True)
        env = {**os.environ, "DATABASE_URL": f"sqlite:{tmp}/lipa.db", "LIPA_CONFIG": "/nonexistent/lipa.toml",
               "LIPA_WEBHOOK_ALLOW_PRIVATE": "true", "LIPA_LOG": "warn"}
        keys = subprocess.run([lipa, "keys", "create", "--name", "shop"], env=env, capture_output=True,
                              text=True, timeout=DEADLINE)
        assert keys.returncode == 0, f"lipa keys create failed: {keys.stdout}{keys.stderr}"
        cls.api_key = re.search(r"lipa_sk_\w+", keys.stdout).group(0)
        cls.secret = re.search(r"whsec_\w+", keys.stdout).group(0)

        log = open(f"{tmp}/lipa.log", "w")
        cls.addClassCleanup(log.close)
        cls.lipa = subprocess.Popen([lipa, "serve", "--listen", "127.0.0.1:0", "--sim-port", "0"], env=env,
                                    stdout=subprocess.PIPE, stderr=log, text=True)
        cls.addClassCleanup(cls.stop_lipa)
        lines = queue.Queue()  # keep reading stdout for the whole run, or lipa blocks on a full pipe
        threading.Thread(target=lambda: [lines.put(line) for line in cls.lipa.stdout], daemon=True).start()
        urls, end = {}, time.monotonic() + DEADLINE
        while len(urls) < 2:
            try:
                line = lines.get(timeout=max(0.1, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"lipa serve printed no URLs in {DEADLINE}s; log:\n{open(log.name).read()}")
            if m := re.match(r"Simulator \(Daraja\) at (http://[^\s;]+)", line):
                urls["sim"] = m[1]
            elif m := re.match(r"Lipa gateway listening on (http://\S+)", line):
                urls["lipa"] = m[1]
        cls.lipa_url, cls.sim_url = urls["lipa"], urls["sim"]

        super().setUpClass()  # the app, on a free port
        cls.enterClassContext(override_settings(LIPA_URL=cls.lipa_url, LIPA_API_KEY=cls.api_key,
                                                LIPA_WEBHOOK_SECRET=cls.secret, APP_URL=cls.live_server_url))

    @classmethod
    def stop_lipa(cls):
        cls.lipa.terminate()
        try:
            cls.lipa.wait(10)
        except subprocess.TimeoutExpired:
            cls.lipa.kill()
            cls.lipa.wait()

    def api(self, method, path, body=None, key=None):
        """The shop's staff (or this app) calling Lipa's API."""
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.lipa_url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=15) as answer:
                text = answer.read().decode()
                return answer.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def redeliver(self, event_id, payment_id):
        """Has Lipa send an event again (same id, fresh signature); the app must answer "duplicate"."""
        def attempts():
            events = self.api("GET", f"/v1/payments/{payment_id}/webhooks")[1]["events"]
            return next(e["attempts"] for e in events if e["id"] == event_id)
        before = len(attempts())
        status, _ = self.api("POST", f"/v1/webhook-events/{event_id}/redeliver")
        self.assertEqual(status, 202)
        again = wait_for(f"the redelivered {event_id} to be answered", lambda: (a := attempts())[before:] and a)
        self.assertEqual((again[-1]["status"], again[-1]["response"]), (200, "duplicate"))

    def snapshot(self):
        """Everything a webhook can change."""
        purchases = list(Purchase.objects.order_by("pk").values_list("pk", "reader", "status", "payment_id", "receipt"))
        return purchases, sorted(WebhookEvent.objects.values_list("id", flat=True))

    def test_post_unlocks_on_the_verified_webhook_only_and_locks_again_on_refund(self):
        post_url = f"{self.live_server_url}/posts/{SLUG}"
        alice = Browser()
        self.assertIn("Sign in to unlock", alice.open(post_url))
        page = alice.submit("/login", name="alice")
        self.assertIn("Unlock for KES 50", page)
        self.assertNotIn('id="premium"', page)

        # The next prompt to this phone is approved, but Daraja's callback reaches Lipa 4 s late.
        status, _ = post_json(f"{self.sim_url}/sim/phones/{DELAYED_PHONE}/script",
                              {"result": "0", "after_ms": 0, "faults": {"delay": 4000}})
        self.assertEqual(status, 204, "scripting the simulator's phone failed")

        # "Unlock" redirects to Lipa's hosted checkout page; the reader types the phone there.
        alice.submit("/unlock")
        self.assertRegex(alice.url, rf"^{re.escape(self.lipa_url)}/checkout/cs_\w+$", "not sent to Lipa's checkout")
        self.assertIn("KES 50", alice.html)
        session_id = alice.url.rsplit("/", 1)[1]
        alice.submit("/checkout/", phone="0711 222 333")
        self.assertEqual(alice.url, f"{self.lipa_url}/checkout/{session_id}")

        # The reader comes back to the shop before M-Pesa confirmed: nothing is unlocked.
        _, session = self.api("GET", f"/v1/checkout-sessions/{session_id}")
        page = alice.open(f"{session['success_url']}?session_id={session_id}")
        self.assertIn("Waiting for confirmation", page)
        self.assertNotIn('id="premium"', page)
        self.assertEqual(Purchase.objects.get().status, "pending")
        self.assertNotIn('id="premium"', alice.open(post_url))
        self.assertEqual(WebhookEvent.objects.count(), 0, "a webhook came before the reader returned")

        # Lipa's page turns to the receipt; "Return to shop" goes to the success_url...
        link = wait_for("Lipa's checkout page to show the payment received", lambda: re.search(
            r'href="([^"]+)"[^>]*>Return to shop', alice.open(f"{self.lipa_url}/checkout/{session_id}")))
        return_url = html.unescape(link.group(1))
        self.assertEqual(return_url, f"{session['success_url']}?session_id={session_id}")
        # ...which shows the post once the signed payment.paid webhook arrived (it refreshes itself).
        page = wait_for("the post to unlock after the payment.paid webhook",
                        lambda: 'id="premium"' in alice.open(return_url) and alice.html)
        self.assertEqual(alice.url, post_url)
        _, session = self.api("GET", f"/v1/checkout-sessions/{session_id}")
        payment_id = session["payment_id"]
        _, payment = self.api("GET", f"/v1/payments/{payment_id}")
        self.assertEqual((payment["status"], payment["metadata"]["reader"]), ("paid", "alice"))
        self.assertIn(f"receipt {payment['receipt']}", page, "the post does not show the M-Pesa receipt")
        _, hooks = self.api("GET", f"/v1/payments/{payment_id}/webhooks")
        paid_event = next(e for e in hooks["events"] if e["type"] == "payment.paid")
        self.assertEqual(Purchase.objects.get().status, "paid")

        # Only alice paid.
        bob = Browser()
        bob.open(post_url)
        page = bob.submit("/login", name="bob")
        self.assertIn("Unlock for KES 50", page)
        self.assertNotIn('id="premium"', page)

        # Forged and replayed webhooks are refused (400) and change nothing.
        before = self.snapshot()
        hook = f"{self.live_server_url}/lipa/webhook"
        forged = json.dumps({"id": "evt_000000000000000000000001", "type": "refund.succeeded",
                             "created_at": "2026-01-01T00:00:00Z",
                             "data": {"id": "re_forged", "status": "succeeded", "payment": payment}}).encode()
        cases = {
            "wrong secret": (forged, sign("whsec_not_the_shops_secret", forged)),
            "replayed (timestamp 10 minutes old)": (forged, sign(self.secret, forged, int(time.time()) - 600)),
            "body changed after signing": (forged + b" ", sign(self.secret, forged)),
            "no signature": (forged, ""),
        }
        for name, (body, signature) in cases.items():
            status, text = post_json(hook, body, {"Lipa-Signature": signature, "Lipa-Event-Id": "evt_forged"})
            self.assertEqual(status, 400, f"{name}: answered {status} {text}")
        self.assertEqual(self.snapshot(), before, "a refused webhook changed the database")
        self.assertIn('id="premium"', alice.open(post_url))
        # Control: the same helper with the right secret and time is accepted (so the refusals above
        # were the signature's doing); an event type the app ignores changes no purchase.
        harmless = json.dumps({"id": "evt_000000000000000000000002", "type": "payment.needs_review",
                               "created_at": "2026-01-01T00:00:00Z", "data": {"id": "pay_x", "metadata": {}}}).encode()
        self.assertEqual(post_json(hook, harmless, {"Lipa-Signature": sign(self.secret, harmless)})[0], 200)
        self.assertEqual(self.snapshot()[0], before[0])
        self.assertEqual(WebhookEvent.objects.count(), len(before[1]) + 1)

        # Lipa delivers payment.paid again (same event id, fresh signature): nothing changes.
        before = self.snapshot()
        self.redeliver(paid_event["id"], payment_id)
        self.assertEqual(self.snapshot(), before, "the second delivery changed the database")
        self.assertIn(f"receipt {payment['receipt']}", alice.open(post_url))

        # Staff refund the payment through Lipa's API; refund.succeeded locks the post again.
        status, refund = self.api("POST", f"/v1/payments/{payment_id}/refunds", {"reason": "reader asked"},
                                  key=f"refund-{payment_id}")
        self.assertEqual(status, 201, f"refund refused: {refund}")
        wait_for("the post to lock again after refund.succeeded",
                 lambda: "Unlock for KES 50" in alice.open(post_url) and 'id="premium"' not in alice.html)
        self.assertEqual(self.api("GET", f"/v1/refunds/{refund['id']}")[1]["status"], "succeeded")
        self.assertEqual(Purchase.objects.get().status, "refunded")
        # A late copy of the old payment.paid (events come in any order) does not unlock it again.
        self.redeliver(paid_event["id"], payment_id)
        self.assertNotIn('id="premium"', alice.open(post_url))
        self.assertEqual(Purchase.objects.get().status, "refunded")
        # Coming back to the old success_url does not unlock it either.
        self.assertNotIn('id="premium"', alice.open(return_url))


class VerifyTest(SimpleTestCase):
    def test_verify(self):
        body, now = b'{"id":"evt_1","type":"payment.paid"}', int(time.time())
        self.assertTrue(verify("whsec_a", sign("whsec_a", body), body))
        self.assertTrue(verify("whsec_a", sign("whsec_a", body, now - 290), body))
        self.assertFalse(verify("whsec_b", sign("whsec_a", body), body))
        self.assertFalse(verify("whsec_a", sign("whsec_a", body, now - 310), body))
        self.assertFalse(verify("whsec_a", sign("whsec_a", body, now + 310), body))
        self.assertFalse(verify("whsec_a", sign("whsec_a", body), body + b"\n"))
        for header in ("", "garbage", "t=,v1=", f"t={now}", f"t=-{now},v1=00", f"t={now},v1=\u00e9", "v1=00,t=x", "t=\u00b2,v1=00"):
            self.assertFalse(verify("whsec_a", header, body), header)
