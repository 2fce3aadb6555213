//! The shop's own SQLite database: movies, tickets and the webhook events already applied. One
//! connection behind a mutex: bookings are serialised, so seats cannot be oversold.

use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Row, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS movies (
    id          INTEGER PRIMARY KEY,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    show_time   INTEGER NOT NULL,
    price       INTEGER NOT NULL,
    max_tickets INTEGER NOT NULL,
    colour      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tickets (
    id               TEXT PRIMARY KEY,
    movie_id         INTEGER NOT NULL REFERENCES movies (id),
    customer_name    TEXT NOT NULL,
    phone            TEXT NOT NULL,
    quantity         INTEGER NOT NULL,
    total            INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'failed')),
    receipt          TEXT,
    transaction_date INTEGER,
    failure          TEXT,
    lipa_session_id  TEXT,
    checkout_url     TEXT,
    lipa_payment_id  TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_movie ON tickets (movie_id, status);
CREATE TABLE IF NOT EXISTS webhook_events (
    id          TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL
);
";

/// A database failure.
#[derive(Debug, thiserror::Error)]
#[error("shop database: {0}")]
pub struct DbError(String);

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

/// A movie on the programme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movie {
    /// Id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// One line about it.
    pub description: String,
    /// Show time, UTC milliseconds.
    pub show_time: i64,
    /// Price of one ticket, KES.
    pub price: u32,
    /// Seats.
    pub max_tickets: u32,
    /// Seats held by pending or paid tickets.
    pub taken: u32,
    /// Poster colour (`#rrggbb`).
    pub colour: String,
}

impl Movie {
    /// Seats still free.
    pub fn seats_left(&self) -> u32 {
        self.max_tickets.saturating_sub(self.taken)
    }
}

/// A ticket's payment state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketStatus {
    /// Seats reserved, payment not yet confirmed.
    Pending,
    /// Paid.
    Paid,
    /// Not paid; seats released.
    Failed,
}

impl TicketStatus {
    fn parse(s: &str) -> Self {
        match s {
            "paid" => Self::Paid,
            "failed" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// A booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// `tk_…`, unguessable: the customer's link to it.
    pub id: String,
    /// The movie.
    pub movie_id: i64,
    /// Who booked.
    pub customer_name: String,
    /// 12 digits.
    pub phone: String,
    /// Seats.
    pub quantity: u32,
    /// KES.
    pub total: u32,
    /// Payment state.
    pub status: TicketStatus,
    /// M-Pesa receipt.
    pub receipt: Option<String>,
    /// M-Pesa's transaction time, UTC ms.
    pub transaction_date: Option<i64>,
    /// Why it failed, for the customer.
    pub failure: Option<String>,
    /// Lipa's checkout session.
    pub lipa_session_id: Option<String>,
    /// Lipa's payment that paid (or last tried to pay) it.
    pub lipa_payment_id: Option<String>,
    /// Checkout sessions made for it.
    pub attempts: u32,
    /// Booked, UTC ms.
    pub created_at: i64,
    /// Lipa's page for the current attempt.
    pub checkout_url: Option<String>,
    /// Where the refund of a cancelled booking is, if one was asked for.
    pub refund_status: Option<crate::refunds::RefundState>,
    /// A line for the customer about the refund.
    pub refund_note: Option<String>,
}

/// What booking did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Booked {
    /// A new pending ticket.
    New(Ticket),
    /// That ticket was booked already, with the same details (the form sent again).
    Again(Ticket),
    /// That ticket id is taken by a booking with other details.
    Conflict,
}

/// Why a booking was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    /// No such movie.
    #[error("no such movie")]
    NoMovie,
    /// Not enough seats.
    #[error("only {0} seats left")]
    SoldOut(u32),
}

/// The shop's database.
#[derive(Debug, Clone)]
pub struct Db(Arc<Mutex<Connection>>);

const TICKET_COLUMNS: &str = "id, movie_id, customer_name, phone, quantity, total, status, receipt, transaction_date,
    failure, lipa_session_id, lipa_payment_id, attempts, created_at, checkout_url, refund_status, refund_note";

fn ticket(r: &Row<'_>) -> rusqlite::Result<Ticket> {
    Ok(Ticket {
        id: r.get(0)?,
        movie_id: r.get(1)?,
        customer_name: r.get(2)?,
        phone: r.get(3)?,
        quantity: r.get(4)?,
        total: r.get(5)?,
        status: TicketStatus::parse(&r.get::<_, String>(6)?),
        receipt: r.get(7)?,
        transaction_date: r.get(8)?,
        failure: r.get(9)?,
        lipa_session_id: r.get(10)?,
        lipa_payment_id: r.get(11)?,
        attempts: r.get(12)?,
        created_at: r.get(13)?,
        checkout_url: r.get(14)?,
        refund_status: r.get::<_, Option<String>>(15)?.as_deref().and_then(crate::refunds::RefundState::parse),
        refund_note: r.get(16)?,
    })
}

const MOVIE_QUERY: &str = "SELECT m.id, m.title, m.description, m.show_time, m.price, m.max_tickets, m.colour,
    COALESCE((SELECT SUM(quantity) FROM tickets t WHERE t.movie_id = m.id AND t.status IN ('pending', 'paid')
                                AND COALESCE(t.refund_status, '') <> 'succeeded'), 0)
    FROM movies m";

fn movie(r: &Row<'_>) -> rusqlite::Result<Movie> {
    Ok(Movie {
        id: r.get(0)?,
        title: r.get(1)?,
        description: r.get(2)?,
        show_time: r.get(3)?,
        price: r.get(4)?,
        max_tickets: r.get(5)?,
        colour: r.get(6)?,
        taken: r.get(7)?,
    })
}

pub(crate) fn find_ticket(c: &Connection, id: &str) -> rusqlite::Result<Option<Ticket>> {
    c.query_row(&format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?1"), [id], ticket).optional()
}

fn seats_taken(c: &Connection, movie_id: i64) -> rusqlite::Result<Option<(u32, u32)>> {
    c.query_row(&format!("{MOVIE_QUERY} WHERE m.id = ?1"), [movie_id], |r| {
        Ok((r.get::<_, u32>(5)?, r.get::<_, u32>(7)?))
    })
    .optional()
}

impl Db {
    /// Opens (creating) the database; seeds the programme on first use, relative to `now`.
    pub fn open(path: &std::path::Path, now: i64) -> Result<Self, DbError> {
        let conn = Connection::open(path)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
        conn.execute_batch(SCHEMA)?;
        for (column, definition) in crate::refunds::COLUMNS {
            let present: bool = conn.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('tickets') WHERE name = ?1",
                [column],
                |r| r.get(0),
            )?;
            if !present {
                conn.execute_batch(&format!("ALTER TABLE tickets ADD COLUMN {column} {definition}"))?;
            }
        }
        let db = Self(Arc::new(Mutex::new(conn)));
        if db.movies_blocking()?.is_empty() {
            db.seed(now)?;
        }
        Ok(db)
    }

    fn seed(&self, now: i64) -> Result<(), DbError> {
        // Show times: the next evenings at 18:30 and 21:00 Nairobi time (15:30 and 18:00 UTC).
        const DAY: i64 = 86_400_000;
        let midnight = now - now.rem_euclid(DAY);
        let evening =
            |day: i64, hour_utc: i64, minute: i64| midnight + day * DAY + hour_utc * 3_600_000 + minute * 60_000;
        let programme = [
            (
                "Nairobi Half Life",
                "A young actor leaves his village for the city.",
                evening(1, 15, 30),
                450,
                40,
                "#b5442c",
            ),
            (
                "Supa Modo",
                "A girl who dreams of being a superhero, and a village that makes it real.",
                evening(1, 18, 0),
                400,
                30,
                "#2c6cb5",
            ),
            ("Kati Kati", "A woman wakes in a strange resort with no memory.", evening(2, 15, 30), 350, 25, "#6a2cb5"),
            (
                "The Boy Who Harnessed the Wind",
                "A boy builds a windmill to save his village.",
                evening(2, 18, 0),
                500,
                20,
                "#2c9a5b",
            ),
        ];
        for (title, description, show_time, price, max, colour) in programme {
            self.add_movie(title, description, show_time, price, max, colour)?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction half-applied (SQLite rolls
        // it back), so a poisoned lock is still safe to use.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, DbError> + Send + 'static,
    ) -> Result<R, DbError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || f(&mut db.lock())).await.map_err(|e| DbError(e.to_string()))?
    }

    /// Adds a movie; returns its id.
    pub fn add_movie(
        &self,
        title: &str,
        description: &str,
        show_time: i64,
        price: u32,
        max_tickets: u32,
        colour: &str,
    ) -> Result<i64, DbError> {
        let c = self.lock();
        c.execute(
            "INSERT INTO movies (title, description, show_time, price, max_tickets, colour) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![title, description, show_time, price, max_tickets, colour],
        )?;
        Ok(c.last_insert_rowid())
    }

    fn movies_blocking(&self) -> Result<Vec<Movie>, DbError> {
        let c = self.lock();
        let mut stmt = c.prepare(&format!("{MOVIE_QUERY} ORDER BY m.show_time, m.id"))?;
        let rows = stmt.query_map([], movie)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The programme.
    pub async fn movies(&self) -> Result<Vec<Movie>, DbError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.movies_blocking()).await.map_err(|e| DbError(e.to_string()))?
    }

    /// One movie.
    pub async fn movie(&self, id: i64) -> Result<Option<Movie>, DbError> {
        self.run(move |c| Ok(c.query_row(&format!("{MOVIE_QUERY} WHERE m.id = ?1"), [id], movie).optional()?)).await
    }

    /// Books `quantity` seats as a pending ticket `id`, if that many are free: check and insert
    /// in one immediate transaction. A ticket `id` booked already is [`Booked::Again`] if it has
    /// the same details, else [`Booked::Conflict`].
    pub async fn book(
        &self,
        id: String,
        movie_id: i64,
        name: String,
        phone: String,
        quantity: u32,
        now: i64,
    ) -> Result<Result<Booked, BookError>, DbError> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if let Some(t) = find_ticket(&tx, &id)? {
                let same = (t.movie_id, &t.customer_name, &t.phone, t.quantity) == (movie_id, &name, &phone, quantity);
                return Ok(Ok(if same { Booked::Again(t) } else { Booked::Conflict }));
            }
            let Some((max, taken)) = seats_taken(&tx, movie_id)? else { return Ok(Err(BookError::NoMovie)) };
            let left = max.saturating_sub(taken);
            if quantity > left {
                return Ok(Err(BookError::SoldOut(left)));
            }
            let price: u32 = tx.query_row("SELECT price FROM movies WHERE id = ?1", [movie_id], |r| r.get(0))?;
            tx.execute(
                "INSERT INTO tickets (id, movie_id, customer_name, phone, quantity, total, status, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)",
                params![id, movie_id, name, phone, quantity, price.saturating_mul(quantity), now],
            )?;
            let t = tx.query_row(&format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?1"), [&id], ticket)?;
            tx.commit()?;
            Ok(Ok(Booked::New(t)))
        })
        .await
    }

    /// Takes a failed ticket's seats again for a new payment attempt, if they are still free.
    pub async fn rebook(&self, id: String, now: i64) -> Result<Result<Ticket, BookError>, DbError> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let Some(t) = find_ticket(&tx, &id)? else {
                return Ok(Err(BookError::NoMovie));
            };
            if t.status == TicketStatus::Failed {
                let (max, taken) = seats_taken(&tx, t.movie_id)?.unwrap_or((0, 0));
                let left = max.saturating_sub(taken);
                if t.quantity > left {
                    return Ok(Err(BookError::SoldOut(left)));
                }
                // The failed attempt's session is forgotten at once, so that its late failure
                // news cannot fail this attempt before the new session is recorded.
                tx.execute(
                    "UPDATE tickets SET status = 'pending', failure = NULL, lipa_session_id = NULL, checkout_url = NULL,
                        updated_at = ?2
                     WHERE id = ?1",
                    params![id, now],
                )?;
            }
            let t = tx.query_row(&format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?1"), [&id], ticket)?;
            tx.commit()?;
            Ok(Ok(t))
        })
        .await
    }

    /// A ticket.
    pub async fn ticket(&self, id: String) -> Result<Option<Ticket>, DbError> {
        self.run(move |c| Ok(find_ticket(c, &id)?)).await
    }

    /// Records the checkout session made for a pending ticket's attempt. Returns false if the
    /// ticket is no longer pending (an earlier attempt's outcome came meanwhile): the session
    /// is then not to be used.
    pub async fn set_session(&self, id: String, session_id: String, url: String, now: i64) -> Result<bool, DbError> {
        self.run(move |c| {
            Ok(c.execute(
                "UPDATE tickets SET lipa_session_id = ?2, checkout_url = ?3, attempts = attempts + 1, updated_at = ?4
                 WHERE id = ?1 AND status = 'pending'",
                params![id, session_id, url, now],
            )? == 1)
        })
        .await
    }

    /// Applies a payment outcome once per webhook event id (`event_id` None: an outcome the
    /// shop learned by asking Lipa). Returns false for an event already applied.
    pub async fn apply(&self, event_id: Option<String>, outcome: Outcome, now: i64) -> Result<bool, DbError> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if let Some(event_id) = &event_id
                && tx.execute(
                    "INSERT OR IGNORE INTO webhook_events (id, received_at) VALUES (?1, ?2)",
                    params![event_id, now],
                )? == 0
            {
                return Ok(false);
            }
            match outcome {
                // Money moved: paid wins over everything, even a ticket that had failed (its
                // seats are taken again).
                Outcome::Paid { ticket_id, payment_id, receipt, transaction_date } => {
                    tx.execute(
                        "UPDATE tickets SET status = 'paid', receipt = COALESCE(?3, receipt),
                            transaction_date = COALESCE(?4, transaction_date), lipa_payment_id = ?2, failure = NULL,
                            updated_at = ?5
                         WHERE id = ?1",
                        params![ticket_id, payment_id, receipt, transaction_date, now],
                    )?;
                }
                // Only a pending ticket fails, and only for its current attempt's session; its
                // seats go back on sale.
                Outcome::Failed { ticket_id, payment_id, session_id, reason } => {
                    tx.execute(
                        "UPDATE tickets SET status = 'failed', failure = ?3, lipa_payment_id = ?2, updated_at = ?4
                         WHERE id = ?1 AND status = 'pending' AND lipa_session_id IS ?5",
                        params![ticket_id, payment_id, reason, now, session_id],
                    )?;
                }
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// Releases the seats of tickets still pending since before `before` (the customer left
    /// the checkout without paying). Returns how many.
    pub async fn release_abandoned(&self, before: i64, now: i64) -> Result<usize, DbError> {
        self.run(move |c| {
            Ok(c.execute(
                "UPDATE tickets SET status = 'failed', failure = 'The payment was not completed in time.', updated_at = ?2
                 WHERE status = 'pending' AND updated_at < ?1",
                params![before, now],
            )?)
        })
        .await
    }
}

/// A payment outcome for a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Paid.
    Paid {
        /// The ticket.
        ticket_id: String,
        /// Lipa's payment.
        payment_id: String,
        /// M-Pesa receipt (absent until M-Pesa's callback told it).
        receipt: Option<String>,
        /// M-Pesa transaction time, UTC ms.
        transaction_date: Option<i64>,
    },
    /// Failed or expired.
    Failed {
        /// The ticket.
        ticket_id: String,
        /// Lipa's payment.
        payment_id: String,
        /// The checkout session the payment belongs to. The failure applies only while this
        /// is still the ticket's current session: a failure of an attempt the customer has
        /// since replaced with a retry must not fail the retry. None: the shop could not make
        /// a session; it then applies only while the ticket has none.
        session_id: Option<String>,
        /// For the customer.
        reason: String,
    },
}
