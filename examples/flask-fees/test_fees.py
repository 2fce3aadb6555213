"""End to end: a real `lipa serve` (simulator mode) and the Flask app on a free port, driven over HTTP.

The tests run in file order and share one gateway and one app: A pays by prompt, B by Pay Bill
after a cancelled prompt, then forged/replayed webhooks for C, then a redelivery of A's event.
"""
import hashlib, hmac, json, os, re, sqlite3, subprocess, threading, time
from types import SimpleNamespace

import pytest
import requests
from werkzeug.serving import make_server

PERIOD, FEE = "2026-12", 200
A, B, C = 1, 2, 3  # member ids (Amina, Brian, Chebet)


def wait_for(what, check, timeout=30):
    """Polls check() until it returns something truthy; fails after `timeout` seconds saying what it waited for."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except (requests.RequestException, AssertionError) as e:
            last = e
        time.sleep(0.1)
    pytest.fail(f"waited {timeout} s for {what}; last error: {last!r}")


def sign(secret, body, t=None):
    t = int(time.time()) if t is None else t
    return f"t={t},v1=" + hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def lipa(tmp_path_factory):
    binary = os.environ.get("LIPA_BIN")
    if not binary:
        pytest.fail("LIPA_BIN is not set: point it at a built lipa binary, e.g. LIPA_BIN=target/release/lipa", False)
    tmp = tmp_path_factory.mktemp("lipa")
    env = {**os.environ, "DATABASE_URL": f"sqlite:{tmp}/lipa.db", "LIPA_CONFIG": "/nonexistent/lipa.toml",
           "LIPA_WEBHOOK_ALLOW_PRIVATE": "true", "LIPA_LOG": "warn"}
    created = subprocess.run([binary, "keys", "create", "--name", "club-fees"], env=env, capture_output=True,
                             text=True, timeout=30)
    assert created.returncode == 0, f"lipa keys create failed: {created.stdout}{created.stderr}"
    key, secret = re.search(r"lipa_sk_\w+", created.stdout)[0], re.search(r"whsec_\w+", created.stdout)[0]

    stderr = open(tmp / "lipa.stderr", "w+")
    proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--sim-port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=stderr, text=True)
    urls = {}

    def drain():  # keeps reading stdout for the whole run, or lipa would block on a full pipe
        for line in proc.stdout:
            if m := re.search(r"Simulator \(Daraja\) at (http://[\d.:]+)", line):
                urls["sim"] = m[1]
            if m := re.search(r"Lipa gateway listening on (http://[\d.:]+)", line):
                urls["gateway"] = m[1]
    threading.Thread(target=drain, daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while len(urls) < 2:
            stderr.seek(0)
            assert proc.poll() is None, f"lipa serve exited with {proc.returncode}: {stderr.read()}"
            assert time.monotonic() < deadline, f"lipa serve printed no URLs in 30 s: {stderr.read()}"
            time.sleep(0.05)
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {key}"
        yield SimpleNamespace(url=urls["gateway"], sim=urls["sim"], key=key, secret=secret, api=api)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def app(lipa, tmp_path_factory):
    server = make_server("127.0.0.1", 0, None, threaded=True)  # port 0: a free port; the app is set below
    url = f"http://127.0.0.1:{server.server_port}"
    db = tmp_path_factory.mktemp("app") / "fees.db"
    os.environ.update(LIPA_URL=lipa.url, LIPA_API_KEY=lipa.key, LIPA_WEBHOOK_SECRET=lipa.secret, APP_URL=url,
                      FEES_DB=str(db), FEE_PERIOD=PERIOD, FEE_AMOUNT=str(FEE))
    import app as fees  # reads its configuration from the environment set just above
    server.app = fees.app
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def rows():  # everything the app knows, to prove that a refused or repeated webhook changed nothing
        with sqlite3.connect(db) as con:
            con.row_factory = sqlite3.Row
            fees = {r["member_id"]: dict(r) for r in con.execute("SELECT * FROM fees")}
            return fees, [dict(r) for r in con.execute("SELECT * FROM webhook_events ORDER BY id")]

    def page(member):
        html = requests.get(f"{url}/fees/{member}", timeout=10).text
        found = lambda pattern: (m := re.search(pattern, html)) and m[1]
        return SimpleNamespace(html=html, status=found(r'data-status="(\w+)"'), receipt=found(r'id="receipt">(\w+)<'),
                               business=found(r'id="business-number">(\d+)<'),
                               account=found(r'id="account-number">(\w+)<'))

    yield SimpleNamespace(url=url, rows=rows, page=page)
    server.shutdown()


def follow(app, member):
    """Reads the app's relayed event stream in a thread; returns the thread and the list of (event, data) it got."""
    received = []

    def read():
        with requests.get(f"{app.url}/fees/{member}/events", stream=True, timeout=(5, 30)) as r:
            if r.status_code != 200:
                received.append(("http", r.status_code))
            for line in r.iter_lines(decode_unicode=True):
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    received.append((name, json.loads(line[5:])))
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, received


def payments_of(lipa, member):
    r = lipa.api.get(f"{lipa.url}/v1/payments", params={"reference": f"M{member}/{PERIOD}"}, timeout=10)
    return r.json()["data"]


def test_member_a_pays_by_prompt_and_is_paid_only_by_the_webhook(lipa, app):
    phone, msisdn = "0711 222 333", "254711222333"
    # The simulator approves A's next prompt, but its callback reaches Lipa (and so the webhook the app) 3 s later.
    r = requests.post(f"{lipa.sim}/sim/phones/{msisdn}/script", timeout=10,
                      json={"result": "0", "after_ms": 0, "faults": {"delay": 3000}})
    assert r.status_code < 300, r.text
    assert app.page(A).status == "due"

    # A double click: two submissions at once carry the same Idempotency-Key (member + period + attempt).
    barrier, answers = threading.Barrier(2), []

    def submit():
        barrier.wait()
        answers.append(requests.post(f"{app.url}/fees/{A}/pay", data={"phone": phone}, allow_redirects=False,
                                     timeout=30))
    clicks = [threading.Thread(target=submit) for _ in range(2)]
    [t.start() for t in clicks]
    [t.join(30) for t in clicks]
    assert [a.status_code for a in answers] == [303, 303], [a.text for a in answers]
    assert answers[0].headers["Location"].endswith(f"/fees/{A}")
    assert len(payments_of(lipa, A)) == 1, "a double click must create one payment"
    pushes = [q for q in requests.get(f"{lipa.sim}/sim/requests", timeout=10).json()
              if q["endpoint"] == "stk_push" and str(q["request"].get("PhoneNumber")) == msisdn]
    assert len(pushes) == 1, f"a double click must send one prompt, the simulator got {len(pushes)}"

    stream, relayed = follow(app, A)
    # A is back on the app's waiting page before M-PESA confirmed: not paid, Pay Bill fallback shown.
    page = app.page(A)
    assert page.status == "pending" and "Waiting for confirmation" in page.html, page.html
    assert '<meta http-equiv="refresh" content="3">' in page.html, "no-JavaScript fallback: the page reloads itself"
    payment = payments_of(lipa, A)[0]
    assert (page.business, page.account) == (payment["paybill"]["business_number"],
                                              payment["paybill"]["account_number"])
    assert f"No prompt? Pay Bill <strong id=\"business-number\">{page.business}</strong>" in page.html
    assert app.rows()[0][A]["status"] == "pending"

    page = wait_for("A's fee to be paid by the webhook", lambda: (p := app.page(A)).status == "paid" and p)
    payment = lipa.api.get(f"{lipa.url}/v1/payments/{payment['id']}", timeout=10).json()
    assert payment["status"] == "paid" and payment["receipt"], payment
    assert page.receipt == payment["receipt"], "the page shows the M-Pesa receipt"
    assert "refresh" not in page.html
    events = lipa.api.get(f"{lipa.url}/v1/payments/{payment['id']}/webhooks", timeout=10).json()["events"]
    paid = [e["id"] for e in events if e["type"] == "payment.paid"]
    assert [(e["id"], e["type"]) for e in app.rows()[1]] == [(paid[0], "payment.paid")], "paid by the verified webhook"

    stream.join(30)
    assert not stream.is_alive(), "the relayed stream ends once the payment is final"
    assert relayed[-2:] == [("payment", {"status": "paid"}), ("end", {})], f"the relay passes on the final state: {relayed}"
    assert all(data in ({"status": "pending"}, {"status": "paid"}, {}) for _, data in relayed), relayed

    # Submitting again once paid sends nothing.
    assert requests.post(f"{app.url}/fees/{A}/pay", data={"phone": phone}, timeout=30).ok
    assert len(payments_of(lipa, A)) == 1


def test_member_b_prompt_is_cancelled_then_pays_by_paybill(lipa, app):
    r = requests.post(f"{app.url}/fees/{B}/pay", data={"phone": "0700001032"}, timeout=30)  # the customer cancels
    assert r.ok and 'data-status="' in r.text, r.text
    page = wait_for("B's fee to fail by the payment.failed webhook", lambda: (p := app.page(B)).status == "failed" and p)
    assert "did not go through" in page.html and page.business and page.account, page.html

    payment = payments_of(lipa, B)[0]
    assert payment["status"] == "failed" and payment["failure_reason"] == "cancelled", payment
    assert payment["paybill"] == {"business_number": page.business, "account_number": page.account}

    # B pays by hand from the M-PESA menu with exactly what the app showed; the failed page follows it live.
    stream, relayed = follow(app, B)
    wait_for("the relay to pass on the failed state", lambda: relayed)
    assert relayed == [("payment", {"status": "failed"})], relayed
    r = requests.post(f"{lipa.sim}/sim/c2b/pay", timeout=10, json={
        "shortcode": int(page.business), "account": page.account, "amount": FEE, "phone": "0700001032"})
    assert r.ok, r.text
    page = wait_for("B's fee to be paid by the Pay Bill webhook", lambda: (p := app.page(B)).status == "paid" and p)
    payment = lipa.api.get(f"{lipa.url}/v1/payments/{payment['id']}", timeout=10).json()
    assert payment["settled_by"] == "c2b" and page.receipt == payment["receipt"] == r.json()["trans_id"], payment
    stream.join(30)
    assert relayed[1:] == [("payment", {"status": "paid"}), ("end", {})], relayed


def test_forged_and_replayed_webhooks_are_refused_and_change_nothing(lipa, app):
    before = app.rows()
    body = json.dumps({"id": "evt_0123456789abcdef01234567", "type": "payment.paid", "created_at": "2026-12-01T09:00:00Z",
                       "data": {"id": "pay_0123456789abcdef01234567", "status": "paid", "amount": FEE,
                                "receipt": "FAKE123456", "metadata": {"member_id": C, "period": PERIOD, "attempt": 1}}
                       }).encode()
    now = int(time.time())
    refused = [  # (what, Lipa-Signature, body sent)
        ("no signature", None, body),
        ("forged (wrong secret)", sign("whsec_not_the_secret", body), body),
        ("replayed (valid signature, 6 minutes old)", sign(lipa.secret, body, now - 360), body),
        ("valid signature, 6 minutes ahead", sign(lipa.secret, body, now + 360), body),
        ("tampered body (signature of another body)", sign(lipa.secret, body), body.replace(b"FAKE123456", b"FAKE999999")),
        ("garbage header", "t=soon,v1=zz", body),
        ("non-ASCII digits and signature", "t=\u00b2,v1=\u00e9", body),
    ]
    for what, signature, sent in refused:
        # Header values travel as latin-1, as a browser or proxy could send them.
        headers = {"Content-Type": "application/json", **({"Lipa-Signature": signature.encode("latin-1")} if signature else {})}
        r = requests.post(f"{app.url}/webhooks/lipa", data=sent, headers=headers, timeout=10)
        assert r.status_code == 400, f"{what}: {r.status_code} {r.text}"
    assert app.rows() == before, "a refused webhook changed the app's data"
    assert app.page(C).status == "due"


def test_a_redelivered_event_changes_nothing(lipa, app):
    fee_a = app.rows()[0][A]
    assert fee_a["status"] == "paid", "runs after test_member_a_…"
    events = lipa.api.get(f"{lipa.url}/v1/payments/{fee_a['payment_id']}/webhooks", timeout=10).json()["events"]
    event = next(e for e in events if e["type"] == "payment.paid")
    before = app.rows()

    r = lipa.api.post(f"{lipa.url}/v1/webhook-events/{event['id']}/redeliver", timeout=10)
    assert r.status_code == 202, r.text

    def delivered_again():
        again = next(e for e in lipa.api.get(f"{lipa.url}/v1/payments/{fee_a['payment_id']}/webhooks", timeout=10).json()["events"]
                     if e["id"] == event["id"])
        return len(again["attempts"]) > len(event["attempts"]) and again["attempts"][-1]
    attempt = wait_for("Lipa to deliver the event again", delivered_again)
    assert (attempt["status"], attempt["response"]) == (200, "duplicate"), f"the app knew the event id: {attempt}"
    assert app.rows() == before, "a second delivery of the same event changed the app's data"
    assert app.page(A).receipt == fee_a["receipt"]
