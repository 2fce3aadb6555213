//! The simulated Safaricom: tokens, transactions, wallets and the rules that end prompts.
//!
//! All state sits behind one mutex held only for short, non-async sections. Each accepted
//! push gets a driver task that ends its prompt (at once, after a delay, or when the virtual
//! phone times out); ending a prompt is a compare-and-swap on `Status::Open`, so a phone
//! answer, a control-API resolve and a timeout racing for one prompt end it exactly once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::config::{DefaultAnswer, Faults, SimConfig};
use crate::delivery::{self, Delivery};
use crate::envelope::DarajaError;
use crate::records::{CallbackAttempt, PhoneView, RequestRecord, Scripted, Status, Transaction};
use crate::rules::{self, Answer};
use crate::{NAIROBI, ids};

/// A validated push request, ready to become a transaction.
#[derive(Debug, Clone)]
pub(crate) struct PushRequest {
    pub shortcode: u32,
    pub transaction_type: String,
    pub amount: u64,
    pub party_b: u32,
    pub phone: u64,
    pub callback_url: String,
    pub account_reference: String,
    pub description: String,
}

/// The simulator's shared state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: SimConfig,
    state: Mutex<State>,
    /// C2B registrations and payments, apart from STK's state (wallets stay in `state`).
    c2b: Mutex<crate::c2b::Book>,
    /// Reversal and Transaction Status requests and reversals.
    desk: Mutex<crate::initiator::Desk>,
    http: reqwest::Client,
}

#[derive(Debug, Default)]
struct State {
    tokens: HashMap<String, Token>,
    txns: HashMap<String, Transaction>,
    order: Vec<String>,
    open_by_phone: HashMap<u64, String>,
    phones: HashMap<u64, Wallet>,
    scripted: HashMap<u64, VecDeque<Scripted>>,
    faults: Faults,
    default_answer: Option<DefaultAnswer>,
    requests: Vec<RequestRecord>,
    attempts: Vec<CallbackAttempt>,
    receipts: std::collections::HashSet<String>,
    push_window: Window,
    query_window: Window,
    rng: Option<fastrand::Rng>,
    /// Bumped by `reset`, so deliveries started before it are not recorded after it.
    generation: u64,
    /// Error envelopes to answer the next requests with, per endpoint.
    injected: Vec<(Endpoint, DarajaError)>,
    /// Delays before answering the next requests, per endpoint.
    delays: Vec<(Endpoint, std::time::Duration)>,
}

/// Which Daraja endpoint an injected error is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /mpesa/stkpush/v1/processrequest`
    StkPush,
    /// `POST /mpesa/stkpushquery/v1/query`
    StkQuery,
    /// `GET /oauth/v1/generate`
    Oauth,
    /// `POST /mpesa/c2b/v1/registerurl` (and v2)
    C2bRegister,
    /// `POST /mpesa/c2b/v1/simulate` (and v2)
    C2bSimulate,
    /// `POST /pulltransactions/v1/register`
    PullRegister,
    /// `POST /pulltransactions/v1/query`
    PullQuery,
    /// `POST /mpesa/reversal/v1/request`
    Reversal,
    /// `POST /mpesa/transactionstatus/v1/query`
    TransactionStatus,
}

#[derive(Debug)]
struct Token {
    app: String,
    expires: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Wallet {
    balance: u64,
    spent_today: u64,
    day: time::Date,
    wrong_pins: u32,
    pin_locked: bool,
}

/// Requests counted per wall-clock second.
#[derive(Debug, Default)]
struct Window {
    second: u64,
    count: u32,
}

impl Window {
    fn admit(&mut self, limit: u32) -> bool {
        if limit == 0 {
            return true;
        }
        let now = OffsetDateTime::now_utc().unix_timestamp().unsigned_abs();
        if now != self.second {
            self.second = now;
            self.count = 0;
        }
        self.count += 1;
        self.count <= limit
    }
}

/// What the person on the virtual phone does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneAction {
    /// Press Send with this PIN.
    Send {
        /// The PIN typed.
        pin: String,
    },
    /// Press Cancel.
    Cancel,
}

impl Sim {
    pub(crate) fn new(config: SimConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.callback_timeout)
            // Below the gateway's keep-alive limit (10 s by default), so a callback is not
            // written into a connection the gateway is closing at that moment.
            .pool_idle_timeout(Duration::from_secs(4))
            .user_agent("daraja-sim")
            .build()
            .unwrap_or_default();
        let state = State { faults: config.faults.clone(), ..State::default() };
        let (c2b, desk) = (Mutex::default(), Mutex::default());
        Self { inner: Arc::new(Inner { config, state: Mutex::new(state), c2b, desk, http }) }
    }

    /// The settings the simulator started with.
    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that matters
        // more than refusing all further requests would, so keep serving.
        self.inner.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The C2B registrations and payments.
    pub(crate) fn c2b_book(&self) -> MutexGuard<'_, crate::c2b::Book> {
        self.inner.c2b.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The initiator APIs' requests and reversals.
    pub(crate) fn desk(&self) -> MutexGuard<'_, crate::initiator::Desk> {
        self.inner.desk.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The paid STK transaction with this receipt.
    pub(crate) fn transaction_by_receipt(&self, receipt: &str) -> Option<Transaction> {
        let st = self.state();
        st.txns.values().find(|t| t.receipt.as_deref() == Some(receipt)).cloned()
    }

    /// Puts money back in a phone's wallet (a reversal).
    pub(crate) fn credit(&self, msisdn: u64, amount: u64) {
        let mut st = self.state();
        let mut wallet = st.wallet(msisdn, &self.inner.config, OffsetDateTime::now_utc());
        wallet.balance += amount;
        st.phones.insert(msisdn, wallet);
    }

    /// The client callbacks are sent with.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The faults for callbacks that have none of their own.
    pub(crate) fn faults(&self) -> Faults {
        self.state().faults.clone()
    }

    /// Bumped by `reset`: deliveries record their attempts only within their generation.
    pub(crate) fn generation(&self) -> u64 {
        self.state().generation
    }

    /// A fresh receipt number (also a C2B `TransID`).
    pub(crate) fn new_receipt(&self) -> String {
        self.state().new_receipt(OffsetDateTime::now_utc())
    }

    /// Checks the PIN a customer typed on the phone, counting wrong ones as for prompts: the
    /// result code when it is refused.
    pub(crate) fn check_pin(&self, msisdn: u64, pin: &str) -> Result<(), &'static str> {
        let config = &self.inner.config;
        let mut st = self.state();
        let mut wallet = st.wallet(msisdn, config, OffsetDateTime::now_utc());
        let result = if wallet.pin_locked {
            Err("8006")
        } else if pin.trim() == config.pin {
            wallet.wrong_pins = 0;
            Ok(())
        } else {
            wallet.wrong_pins += 1;
            wallet.pin_locked = wallet.wrong_pins >= config.max_wrong_pins;
            Err(if wallet.pin_locked { "8006" } else { "2001" })
        };
        st.phones.insert(msisdn, wallet);
        result
    }

    /// Takes a payment the customer makes by hand from the wallet: the result code when the
    /// wallet cannot pay it (`1` balance, `4` daily limit, `8006` PIN locked).
    pub(crate) fn debit(&self, msisdn: u64, amount: u64) -> Result<(), &'static str> {
        let config = &self.inner.config;
        let mut st = self.state();
        let mut wallet = st.wallet(msisdn, config, OffsetDateTime::now_utc());
        if wallet.pin_locked {
            return Err("8006");
        }
        if amount > wallet.balance {
            return Err("1");
        }
        if wallet.spent_today + amount > config.daily_limit {
            return Err("4");
        }
        wallet.balance -= amount;
        wallet.spent_today += amount;
        st.phones.insert(msisdn, wallet);
        Ok(())
    }

    // ---- OAuth ----

    pub(crate) fn issue_token(&self, key: &str, secret: &str) -> Result<(String, u64), DarajaError> {
        let app = self
            .inner
            .config
            .apps
            .iter()
            .find(|a| a.consumer_key == key && a.consumer_secret == secret)
            .ok_or_else(DarajaError::invalid_authentication)?;
        let lifetime = self.inner.config.token_lifetime;
        let mut st = self.state();
        let token = ids::access_token(st.rng());
        if self.inner.config.one_token_per_app {
            st.tokens.retain(|_, t| t.app != app.consumer_key);
        }
        let now = Instant::now();
        st.tokens.retain(|_, t| t.expires > now);
        st.tokens.insert(token.clone(), Token { app: app.consumer_key.clone(), expires: now + lifetime });
        Ok((token, lifetime.as_secs()))
    }

    pub(crate) fn check_token(&self, token: &str) -> Result<(), DarajaError> {
        let st = self.state();
        match st.tokens.get(token) {
            Some(t) if t.expires > Instant::now() => Ok(()),
            _ => Err(DarajaError::invalid_token()),
        }
    }

    /// Makes every issued token invalid (to test refresh-on-404.001.03).
    pub fn expire_tokens(&self) {
        self.state().tokens.clear();
    }

    // ---- STK Push ----

    pub(crate) fn admit_push(&self) -> Result<(), DarajaError> {
        let limit = self.inner.config.push_rate_limit;
        if self.state().push_window.admit(limit) { Ok(()) } else { Err(DarajaError::spike_arrest()) }
    }

    pub(crate) fn admit_query(&self) -> Result<(), DarajaError> {
        let limit = self.inner.config.query_rate_limit;
        if self.state().query_window.admit(limit) { Ok(()) } else { Err(DarajaError::spike_arrest()) }
    }

    /// Accepts a validated push: opens the prompt and starts its driver.
    pub(crate) fn accept_push(&self, req: PushRequest) -> Result<Transaction, DarajaError> {
        let config = &self.inner.config;
        let merchant = config.merchants.iter().find(|m| m.shortcode == req.shortcode);
        let merchant = merchant.ok_or_else(DarajaError::merchant_unknown)?;
        let now = OffsetDateTime::now_utc();
        let (txn, answer, after) = {
            let mut st = self.state();
            if st.open_by_phone.contains_key(&req.phone) {
                return Err(DarajaError::subscriber_locked());
            }
            let mut faults = st.faults.clone();
            let mut after = config.auto_answer_after;
            let answer = if let Some(script) = st.scripted.get_mut(&req.phone).and_then(VecDeque::pop_front) {
                if let Some(f) = script.faults {
                    faults = f;
                }
                if let Some(ms) = script.after_ms {
                    after = Duration::from_millis(ms);
                }
                script.result
            } else if let Some(magic) = rules::magic(req.phone) {
                magic.plan(&mut faults, config.late_callback_delay)
            } else {
                match st.default_answer.unwrap_or(config.default_answer) {
                    DefaultAnswer::Approve => Answer::Approve,
                    DefaultAnswer::VirtualPhone => Answer::VirtualPhone,
                }
            };
            // What Safaricom does with requests it accepts but cannot carry out.
            let answer = if req.account_reference.chars().count() > 12 {
                Answer::Fail("1025".into())
            } else if req.transaction_type == "CustomerBuyGoodsOnline" && !merchant.tills.contains(&req.party_b) {
                Answer::Fail("SFC_IC0003".into())
            } else if req.transaction_type == "CustomerPayBillOnline" && req.party_b != req.shortcode {
                Answer::Fail("2028".into())
            } else {
                answer
            };
            let mut salt = 0;
            let mut id = ids::checkout_request_id(now, req.phone, salt);
            while st.txns.contains_key(&id) {
                salt += 1;
                id = ids::checkout_request_id(now, req.phone, salt);
            }
            let txn = Transaction {
                checkout_request_id: id.clone(),
                merchant_request_id: ids::merchant_request_id(st.rng()),
                shortcode: req.shortcode,
                party_b: req.party_b,
                transaction_type: req.transaction_type,
                business_name: merchant.name.clone(),
                phone: req.phone,
                amount: req.amount,
                account_reference: req.account_reference,
                description: req.description,
                callback_url: req.callback_url,
                created_at: now,
                status: Status::Open,
                result_code: None,
                result_desc: None,
                receipt: None,
                completed_at: None,
                faults,
            };
            st.open_by_phone.insert(req.phone, id.clone());
            st.order.push(id.clone());
            st.txns.insert(id, txn.clone());
            (txn, answer, after)
        };
        self.drive(txn.checkout_request_id.clone(), answer, after);
        Ok(txn)
    }

    /// Ends the prompt when its answer is due.
    fn drive(&self, id: String, answer: Answer, after: Duration) {
        let sim = self.clone();
        let lifetime = self.inner.config.prompt_lifetime;
        tokio::spawn(async move {
            match answer {
                Answer::VirtualPhone => {
                    tokio::time::sleep(lifetime).await;
                    sim.complete(&id, &Answer::Fail("1037".into()));
                }
                answer => {
                    if !after.is_zero() {
                        tokio::time::sleep(after).await;
                    }
                    sim.complete(&id, &answer);
                }
            }
        });
    }

    /// Ends an open prompt with `answer`; returns false if it had already ended.
    fn complete(&self, id: &str, answer: &Answer) -> bool {
        let delivery = {
            let mut st = self.state();
            match self.complete_locked(&mut st, id, answer) {
                Some(delivery) => delivery,
                None => return false,
            }
        };
        self.completed(id, delivery);
        true
    }

    /// Sends what a completed prompt causes: its callback, and the C2B echo of a payment for
    /// shortcodes set up that way.
    fn completed(&self, id: &str, delivery: Option<Delivery>) {
        if let Some(delivery) = delivery {
            tokio::spawn(delivery::deliver(self.clone(), self.inner.http.clone(), delivery));
        }
        if let Some(txn) = self.transaction(id).filter(|t| t.receipt.is_some()) {
            crate::c2b::echo_stk(self, &txn);
        }
    }

    /// The state change of [`Sim::complete`], under the caller's lock: `None` if the prompt was
    /// not open, else the callback to deliver (if its faults do not drop it).
    fn complete_locked(&self, st: &mut State, id: &str, answer: &Answer) -> Option<Option<Delivery>> {
        let config = &self.inner.config;
        let now = OffsetDateTime::now_utc();
        let txn = st.txns.get(id).filter(|t| t.status == Status::Open)?;
        let (phone, amount) = (txn.phone, txn.amount);
        let mut wallet = st.wallet(phone, config, now);
        let code = match answer {
            Answer::Approve if wallet.pin_locked => "8006".to_owned(),
            Answer::Approve if amount > wallet.balance => "1".to_owned(),
            Answer::Approve if wallet.spent_today + amount > config.daily_limit => "4".to_owned(),
            Answer::Approve => {
                wallet.balance -= amount;
                wallet.spent_today += amount;
                "0".to_owned()
            }
            Answer::Fail(code) => code.clone(),
            Answer::VirtualPhone => "1037".to_owned(),
        };
        st.phones.insert(phone, wallet);
        let receipt = (code == "0").then(|| st.new_receipt(now));
        st.open_by_phone.remove(&phone);
        let generation = st.generation;
        let txn = st.txns.get_mut(id)?;
        txn.status = Status::Completed;
        txn.result_desc = Some(rules::result_desc(&code).to_owned());
        txn.result_code = Some(code);
        txn.receipt = receipt;
        txn.completed_at = Some(now);
        Some(Delivery::of(txn, config, generation))
    }

    /// Records a delivery attempt, unless the simulator was reset since the push.
    pub(crate) fn record_attempt(&self, generation: u64, attempt: CallbackAttempt) {
        let mut st = self.state();
        if st.generation == generation {
            st.attempts.push(attempt);
        }
    }

    pub(crate) fn record_request(&self, record: RequestRecord) {
        self.state().requests.push(record);
    }

    // ---- STK Query ----

    pub(crate) fn query(&self, shortcode: u32, checkout_request_id: &str) -> Result<Transaction, DarajaError> {
        let st = self.state();
        st.txns
            .get(checkout_request_id)
            .filter(|t| t.shortcode == shortcode)
            .cloned()
            .ok_or_else(|| DarajaError::invalid("CheckoutRequestID"))
    }

    pub(crate) fn passkey(&self, shortcode: u32) -> Option<&str> {
        self.inner.config.merchants.iter().find(|m| m.shortcode == shortcode).map(|m| m.passkey.as_str())
    }

    // ---- the virtual phone and the control API ----

    /// A person answers the prompt on the virtual phone. Returns false if no such prompt is
    /// open (a PIN typed on an ended prompt counts for nothing).
    pub fn respond(&self, msisdn: u64, checkout_request_id: &str, action: PhoneAction) -> bool {
        let config = &self.inner.config;
        let delivery = {
            let mut st = self.state();
            if st.open_by_phone.get(&msisdn).map(String::as_str) != Some(checkout_request_id) {
                return false;
            }
            let answer = match action {
                PhoneAction::Cancel => Answer::Fail("1032".into()),
                PhoneAction::Send { pin } => {
                    let mut wallet = st.wallet(msisdn, config, OffsetDateTime::now_utc());
                    let answer = if wallet.pin_locked {
                        Answer::Fail("8006".into())
                    } else if pin.trim() == config.pin {
                        wallet.wrong_pins = 0;
                        Answer::Approve
                    } else {
                        wallet.wrong_pins += 1;
                        if wallet.wrong_pins >= config.max_wrong_pins {
                            wallet.pin_locked = true;
                            Answer::Fail("8006".into())
                        } else {
                            Answer::Fail("2001".into())
                        }
                    };
                    st.phones.insert(msisdn, wallet);
                    answer
                }
            };
            match self.complete_locked(&mut st, checkout_request_id, &answer) {
                Some(delivery) => delivery,
                None => return false,
            }
        };
        self.completed(checkout_request_id, delivery);
        true
    }

    /// Ends an open prompt now with `answer`. Returns false if it was not open.
    pub fn resolve(&self, checkout_request_id: &str, answer: Answer) -> bool {
        self.complete(checkout_request_id, &answer)
    }

    /// Queues the outcome of the next push to `msisdn` (before magic numbers and defaults).
    pub fn script(&self, msisdn: u64, scripted: Scripted) {
        self.state().scripted.entry(msisdn).or_default().push_back(scripted);
    }

    /// Replaces the faults applied to callbacks of later pushes.
    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    /// Switches how ordinary phones answer (e.g. `lipa demo --auto`).
    pub fn set_default_answer(&self, answer: DefaultAnswer) {
        self.state().default_answer = Some(answer);
    }

    /// Sets a phone's wallet balance (KES).
    pub fn set_balance(&self, msisdn: u64, balance: u64) {
        let mut st = self.state();
        let mut wallet = st.wallet(msisdn, &self.inner.config, OffsetDateTime::now_utc());
        wallet.balance = balance;
        st.phones.insert(msisdn, wallet);
    }

    /// A phone's wallet and prompts.
    pub fn phone(&self, msisdn: u64) -> PhoneView {
        let mut st = self.state();
        let wallet = st.wallet(msisdn, &self.inner.config, OffsetDateTime::now_utc());
        let open_prompt = st.open_by_phone.get(&msisdn).and_then(|id| st.txns.get(id)).cloned();
        let last = st
            .order
            .iter()
            .rev()
            .filter_map(|id| st.txns.get(id))
            .find(|t| t.phone == msisdn && t.status == Status::Completed)
            .cloned();
        PhoneView {
            msisdn,
            balance: wallet.balance,
            spent_today: wallet.spent_today,
            wrong_pins: wallet.wrong_pins,
            pin_locked: wallet.pin_locked,
            open_prompt,
            last,
        }
    }

    /// Open prompts, oldest first.
    pub fn open_prompts(&self) -> Vec<Transaction> {
        let st = self.state();
        let mut open: Vec<_> = st.open_by_phone.values().filter_map(|id| st.txns.get(id)).cloned().collect();
        open.sort_by_key(|t| t.created_at);
        open
    }

    /// One transaction.
    pub fn transaction(&self, checkout_request_id: &str) -> Option<Transaction> {
        self.state().txns.get(checkout_request_id).cloned()
    }

    /// Every accepted push, in order.
    pub fn transactions(&self) -> Vec<Transaction> {
        let st = self.state();
        st.order.iter().filter_map(|id| st.txns.get(id)).cloned().collect()
    }

    /// Every push and query request, accepted or refused, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().requests.clone()
    }

    /// Every callback delivery attempt, in order.
    pub fn callback_attempts(&self) -> Vec<CallbackAttempt> {
        self.state().attempts.clone()
    }

    /// Callback attempts for one transaction.
    pub fn callback_attempts_for(&self, checkout_request_id: &str) -> Vec<CallbackAttempt> {
        self.state().attempts.iter().filter(|a| a.checkout_request_id == checkout_request_id).cloned().collect()
    }

    /// Forgets transactions, wallets, scripts, records and fault changes. Tokens stay valid.
    pub fn reset(&self) {
        let mut st = self.state();
        let tokens = std::mem::take(&mut st.tokens);
        let generation = st.generation + 1;
        *st = State { tokens, generation, faults: self.inner.config.faults.clone(), ..State::default() };
        drop(st);
        *self.c2b_book() = crate::c2b::Book::default();
        *self.desk() = crate::initiator::Desk::default();
    }

    /// Answers the next `count` requests to `endpoint` with `error` (system busy, quota,
    /// internal error, …), after the token check, before anything else.
    pub fn inject_error(&self, endpoint: Endpoint, error: DarajaError, count: u32) {
        let mut st = self.state();
        st.injected.extend((0..count).map(|_| (endpoint, error.clone())));
    }

    /// Answers the next `count` requests to `endpoint` only after `delay`, having done all
    /// their work first: a push creates its transaction and prompts the phone, whether or not
    /// the caller is still waiting. A delay beyond the caller's timeout is Daraja's worst
    /// case, a push that happened but whose answer (its CheckoutRequestID) never arrived.
    pub fn inject_delay(&self, endpoint: Endpoint, delay: std::time::Duration, count: u32) {
        let mut st = self.state();
        st.delays.extend((0..count).map(|_| (endpoint, delay)));
    }

    /// Drops the injected errors and delays not yet used.
    pub fn clear_injected(&self) {
        let mut st = self.state();
        st.injected.clear();
        st.delays.clear();
    }

    pub(crate) fn take_delay(&self, endpoint: Endpoint) -> Option<std::time::Duration> {
        let mut st = self.state();
        let i = st.delays.iter().position(|(e, _)| *e == endpoint)?;
        Some(st.delays.remove(i).1)
    }

    pub(crate) fn take_injected(&self, endpoint: Endpoint) -> Result<(), DarajaError> {
        let mut st = self.state();
        match st.injected.iter().position(|(e, _)| *e == endpoint) {
            Some(i) => Err(st.injected.remove(i).1),
            None => Ok(()),
        }
    }
}

impl State {
    fn rng(&mut self) -> &mut fastrand::Rng {
        self.rng.get_or_insert_with(fastrand::Rng::new)
    }

    fn wallet(&mut self, msisdn: u64, config: &SimConfig, now: OffsetDateTime) -> Wallet {
        let today = now.to_offset(NAIROBI).date();
        let mut wallet = *self.phones.entry(msisdn).or_insert(Wallet {
            balance: config.default_balance,
            spent_today: 0,
            day: today,
            wrong_pins: 0,
            pin_locked: false,
        });
        if wallet.day != today {
            wallet.day = today;
            wallet.spent_today = 0;
        }
        wallet
    }

    fn new_receipt(&mut self, now: OffsetDateTime) -> String {
        loop {
            let receipt = ids::receipt_number(self.rng(), now);
            if self.receipts.insert(receipt.clone()) {
                return receipt;
            }
        }
    }
}
