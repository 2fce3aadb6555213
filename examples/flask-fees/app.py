"""Club fees through Lipa: every member owes a fee for the month, paid by M-PESA prompt or Pay Bill."""
import hashlib, hmac, json, os, sqlite3, time
from contextlib import contextmanager

import requests
from flask import Flask, Response, abort, redirect, render_template, request, url_for

LIPA_URL = os.environ["LIPA_URL"].rstrip("/")  # e.g. http://127.0.0.1:8080
LIPA = {"Authorization": f"Bearer {os.environ['LIPA_API_KEY']}"}
WEBHOOK_SECRET = os.environ["LIPA_WEBHOOK_SECRET"]  # whsec_…
APP_URL = os.environ["APP_URL"].rstrip("/")  # where Lipa reaches this app (for webhooks)
DB = os.environ.get("FEES_DB", "fees.db")
FEE, PERIOD = int(os.environ.get("FEE_AMOUNT", "200")), os.environ.get("FEE_PERIOD", time.strftime("%Y-%m"))
MEMBERS = ["Amina Wanjiru", "Brian Otieno", "Chebet Kiprop"]
app = Flask(__name__)

def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """Lipa-Signature `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>`, at most 5 minutes old."""
    parts = dict(p.strip().split("=", 1) for p in header.split(",") if "=" in p)
    t, v1 = parts.get("t", ""), parts.get("v1", "")
    if not (t.isascii() and t.isdigit() and v1.isascii()) or abs(time.time() - int(t)) > tolerance:
        return False  # malformed or outside the replay window: refused, never an exception
    expected = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, v1)

@contextmanager
def db():  # one transaction: committed at the end of the block, rolled back on an error
    con = sqlite3.connect(DB, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        with con:
            yield con
    finally:
        con.close()

with db() as con:  # attempt: a new Idempotency-Key only once the previous prompt has failed
    con.executescript("""
      CREATE TABLE IF NOT EXISTS members (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS fees (member_id INTEGER, period TEXT, amount INTEGER, status TEXT DEFAULT 'due',
        attempt INTEGER DEFAULT 1, payment_id TEXT, paybill TEXT, receipt TEXT, PRIMARY KEY (member_id, period));
      CREATE TABLE IF NOT EXISTS webhook_events (id TEXT PRIMARY KEY, type TEXT);""")
    con.executemany("INSERT OR IGNORE INTO members (id, name) VALUES (?, ?)", enumerate(MEMBERS, 1))
    con.execute("INSERT OR IGNORE INTO fees (member_id, period, amount) SELECT id, ?, ? FROM members", (PERIOD, FEE))

def load(con, member_id):
    sql = "SELECT * FROM fees JOIN members ON id = member_id WHERE member_id = ? AND period = ?"
    return con.execute(sql, (member_id, PERIOD)).fetchone() or abort(404)

@app.get("/")
def index():
    with db() as con:
        fees = con.execute("SELECT * FROM fees JOIN members ON id = member_id WHERE period = ?", (PERIOD,)).fetchall()
    return render_template("index.html", fees=fees, period=PERIOD, amount=FEE)

@app.get("/fees/<int:member_id>")
def show_fee(member_id, error=None):
    with db() as con:
        fee = load(con, member_id)
    paybill = json.loads(fee["paybill"] or "null")  # {business_number, account_number}, from Lipa's payment
    return render_template("fee.html", fee=fee, paybill=paybill, period=PERIOD, error=error)

@app.post("/fees/<int:member_id>/pay")
def pay(member_id):
    with db() as con:
        con.execute("UPDATE fees SET attempt = attempt + 1, status = 'due' WHERE member_id = ? AND period = ? "
                    "AND status = 'failed'", (member_id, PERIOD))
        fee = load(con, member_id)
    if fee["status"] != "paid":  # a double click or a retry sends the same key: Lipa replays, no second prompt
        key = f"fee-{member_id}-{PERIOD}-{fee['attempt']}"
        r = requests.post(f"{LIPA_URL}/v1/payments", headers={**LIPA, "Idempotency-Key": key}, timeout=30, json={
            "amount": fee["amount"], "phone": request.form["phone"], "account_reference": f"M{member_id}/{PERIOD}",
            "description": f"Fee {PERIOD}", "webhook_url": f"{APP_URL}/webhooks/lipa",
            "metadata": {"member_id": member_id, "period": PERIOD, "attempt": fee["attempt"]}})
        if r.status_code != 201:  # 422 bad phone, 409 a prompt already open, 429 too many prompts
            return show_fee(member_id, error=r.json()["error"]["message"]), r.status_code
        p = r.json()
        with db() as con:  # the webhook may have come first: never move a fee back from paid or failed
            con.execute("UPDATE fees SET payment_id = ?, paybill = ?, status = CASE status WHEN 'due' THEN 'pending' "
                        "ELSE status END WHERE member_id = ? AND period = ? AND attempt = ? AND status != 'paid'",
                        (p["id"], json.dumps(p["paybill"]), member_id, PERIOD, fee["attempt"]))
    return redirect(url_for("show_fee", member_id=member_id), 303)

@app.get("/fees/<int:member_id>/events")
def events(member_id):
    """Lipa's live stream for the fee's payment, relayed without the API key: only the status reaches the browser."""
    with db() as con:
        payment_id = load(con, member_id)["payment_id"] or abort(404)
    upstream = requests.get(f"{LIPA_URL}/v1/payments/{payment_id}/events", headers=LIPA, stream=True, timeout=(5, 60))
    upstream.raise_for_status()

    def relay():
        with upstream:
            for line in upstream.iter_lines(decode_unicode=True):
                if line.startswith("data:"):
                    yield f"event: payment\ndata: {json.dumps({'status': json.loads(line[5:])['status']})}\n\n"
                elif line.startswith(":"):  # Lipa's keep-alive; passing it on notices a browser that left
                    yield ":\n\n"
        yield "event: end\ndata: {}\n\n"  # or EventSource would reconnect
    return Response(relay(), mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})

@app.post("/webhooks/lipa")
def webhook():
    body = request.get_data()  # the raw bytes, exactly as signed
    if not verify(WEBHOOK_SECRET, request.headers.get("Lipa-Signature", ""), body):
        return "bad signature", 400
    event = json.loads(body)
    p, kind, m = event["data"], event["type"], event["data"].get("metadata") or {}
    with db() as con:  # recording the event id and applying it commit together, or not at all
        if not con.execute("INSERT OR IGNORE INTO webhook_events (id, type) VALUES (?, ?)", (event["id"], kind)).rowcount:
            return "duplicate", 200
        if kind == "payment.paid":  # money moved: pays the fee whenever it comes, once
            con.execute("UPDATE fees SET status = 'paid', receipt = ?, payment_id = ? WHERE member_id = ? "
                        "AND period = ? AND status != 'paid'", (p["receipt"], p["id"], m["member_id"], m["period"]))
        elif kind == "payment.receipt_added":
            con.execute("UPDATE fees SET receipt = ? WHERE payment_id = ? AND receipt IS NULL", (p["receipt"], p["id"]))
        elif kind in ("payment.failed", "payment.expired"):  # only the fee's current attempt may fail it
            con.execute("UPDATE fees SET status = 'failed' WHERE member_id = ? AND period = ? AND attempt = ? "
                        "AND status IN ('due', 'pending')", (m["member_id"], m["period"], m["attempt"]))
    return "ok", 200
