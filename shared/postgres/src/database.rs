//! The container's one database connection: opened by the first call that needs it, reused
//! by every later call, re-opened when it has dropped.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::HashMap;
use tokio::sync::Mutex;
use tokio::time::timeout;
use tokio_postgres::error::SqlState;

use postgres_types::{FromSql, ToSql, Type};
use tokio_postgres::{Client, Row, Statement};

use crate::{is_connection_error, Connect, Error};

/// The time limits and choices of a `Database`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Making a connection, logging in included.
    pub connect_timeout: Duration,
    /// Each call, before its statement is cancelled.
    pub query_timeout: Duration,
    /// A connection idle this long is pinged before use.
    pub idle_check_after: Duration,
    /// Whether statements are prepared once per connection (off behind RDS Proxy or
    /// PgBouncer in transaction mode, which cannot keep them).
    pub prepared_statements: bool,
    /// Called each time a connection replaces one opened before (for the caller's metrics).
    pub on_reconnect: fn(),
}

pub struct Database<C> {
    connector: C,
    settings: Settings,
    open: Mutex<Option<Open>>,
    /// Whether a connection was ever opened: any later one is a reconnect, in the metrics.
    opened_once: AtomicBool,
}

/// The open connection and when a call last took it.
struct Open {
    client: Arc<Connection>,
    last_used: Instant,
    _floor: Option<TimerFloor>,
}

/// A timer kept pending while the connection is open, always due before any call's time
/// limit: a call's limit is then never the runtime's earliest timer, so registering it does
/// not wake the runtime's driver (a write to its eventfd, a fifth of the client's CPU for a
/// one-round-trip call measured by the operation benchmark). It fires every half time limit;
/// with a time limit under `TimerFloor::SHORTEST_LIMIT` there is none (it would wake the
/// process more often than it saves).
struct TimerFloor(tokio::task::JoinHandle<()>);

impl TimerFloor {
    const SHORTEST_LIMIT: Duration = Duration::from_secs(1);

    fn start(query_timeout: Duration) -> Option<TimerFloor> {
        if query_timeout < TimerFloor::SHORTEST_LIMIT {
            return None;
        }
        let period = query_timeout / 2;
        Some(TimerFloor(tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
            }
        })))
    }
}

impl Drop for TimerFloor {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The longest a liveness check of an idle connection may take before it is given up.
const LIVENESS_CHECK_LIMIT: Duration = Duration::from_secs(1);

/// How long a call past its time limit waits after a cancel request for its answer, and for
/// any answer on its connection, before the connection is taken for silent. A cancel request
/// is a connection of its own that the server forks a process for: seconds on a server under
/// load.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// How long a cancel request may take to reach the server: sent, it is out of the client's
/// hands, and it cancels whatever the connection runs when it lands.
const CANCEL_LANDING: Duration = Duration::from_secs(10);

/// Waits of `CANCEL_GRACE` a call past its time limit makes (each with a cancel request, unless
/// another call sent one within it) while its connection goes on answering other calls but
/// not it, before it gives the connection up.
const CANCEL_ROUNDS: u32 = 3;

/// What came of a call on a connection (`Database::answer`).
enum Answer<R> {
    /// Within its time limit.
    InTime(R),
    /// After its time limit, once the server was asked to cancel the running statement.
    Late(R),
    /// Nothing, and nothing else came back on the connection either.
    Nothing,
}

impl<C: Connect> Database<C> {
    /// Opens nothing: the first call connects.
    pub fn new(connector: C, settings: Settings) -> Self {
        Database {
            connector,
            settings,
            open: Mutex::new(None),
            opened_once: AtomicBool::new(false),
        }
    }

    /// Runs `query` on the connection within the query time limit. A connection found dead
    /// is replaced, and the call is repeated once on the new one: `query` must be a read, or
    /// a write whose repetition leaves the same rows (deletes, updates to given values,
    /// inserts keyed by an id chosen before the first attempt). `what` names the subject of
    /// the call in error messages.
    pub async fn run<T, E, Q>(
        &self,
        what: &'static str,
        query: impl Fn(Arc<Connection>) -> Q,
    ) -> Result<T, Error>
    where
        Q: Future<Output = Result<T, E>>,
        E: Into<QueryError>,
    {
        self.run_recognising(what, |connection, _| query(connection))
            .await
    }

    /// `run` for a write that a blind repeat would answer wrongly (an insert whose key must
    /// be new, consuming a one-time token), but whose repeat can recognise its own earlier
    /// attempt: `query` is told by `is_repeat` that the first attempt may have been applied
    /// before its answer was lost.
    ///
    /// Either way `query` runs up to twice, each time on a connection found alive, the second
    /// only after the first one's connection failed or went silent. Calls in flight at once
    /// share the connection, which PostgreSQL runs one statement at a time: a call stuck past
    /// its time limit (waiting for a row lock, say) holds up those sent after it. Its statement
    /// is therefore cancelled, so the others go on, and the connection is kept, unless nothing
    /// at all comes back on it (see `Database::answer`).
    pub async fn run_recognising<T, E, Q>(
        &self,
        what: &'static str,
        query: impl Fn(Arc<Connection>, bool) -> Q,
    ) -> Result<T, Error>
    where
        Q: Future<Output = Result<T, E>>,
        E: Into<QueryError>,
    {
        const ATTEMPTS: u32 = 2;
        let limit = self.settings.query_timeout;
        let mut attempt = 0;
        // Whether this call was sent again after another call's cancel request hit it.
        let mut resent = false;
        loop {
            let client = self.client().await?;
            let is_repeat = attempt > 0 || resent;
            let answer = self.answer(&client, limit, query(client.clone(), is_repeat));
            let (late, result) = match answer.await {
                Answer::InTime(result) => (false, Some(result)),
                Answer::Late(result) => (true, Some(result)),
                Answer::Nothing => (true, None),
            };
            let failure = match result.map(|result| result.map_err(Into::into)) {
                None => Error::TimedOut(limit),
                Some(Ok(value)) => return Ok(value),
                Some(Err(QueryError::Db(err))) if is_connection_error(&err) => {
                    Error::Db { err, what }
                }
                Some(Err(QueryError::Db(err))) if err.code() == Some(&SqlState::QUERY_CANCELED) => {
                    if late {
                        // Cancelled because its time was up.
                        return Err(Error::TimedOut(limit));
                    }
                    // Within its time, by a cancel request of another call that landed after
                    // that call's own statement had ended: this statement was rolled back,
                    // so sending it again does what the caller asked. (Without a cancel of
                    // ours about, it was the server's statement_timeout: final.)
                    if client.cancelled_within(CANCEL_LANDING) && !resent {
                        resent = true;
                        continue;
                    }
                    return Err(Error::Db { err, what });
                }
                Some(Err(QueryError::Db(err))) => return Err(Error::Db { err, what }),
                Some(Err(QueryError::RowCount(found))) => {
                    return Err(Error::RowCount { found, what })
                }
            };
            // The connection is broken or silent: never reuse it.
            self.discard(&client).await;
            attempt += 1;
            if attempt == ATTEMPTS {
                return Err(failure);
            }
            tracing::info!(what, "retrying on a fresh database connection");
        }
    }

    /// Waits for `call` on `connection` for `limit`; then asks the server to cancel the
    /// statement the connection is running and waits a little more. A call that then
    /// answers was held up by a slow statement (its own, or one sent before it) on a
    /// connection that works. Nothing coming back on the connection at all while waiting
    /// means it is silent (cut by a NAT, the server gone without a word).
    async fn answer<R>(
        &self,
        connection: &Connection,
        limit: Duration,
        call: impl Future<Output = R>,
    ) -> Answer<R> {
        let mut call = std::pin::pin!(call);
        if let Ok(result) = timeout(limit, &mut call).await {
            connection.answered.fetch_add(1, Ordering::Relaxed);
            return Answer::InTime(result);
        }
        for _ in 0..CANCEL_ROUNDS {
            let answered = connection.answered.load(Ordering::Relaxed);
            let cancelling = async {
                // Calls held up together time out together: one cancel request serves
                // them all, more would cancel the statements that were then let through.
                if !connection.cancel_due(CANCEL_GRACE) {
                    return false;
                }
                let token = connection.client.cancel_token();
                if let Ok(Err(err)) = timeout(CANCEL_GRACE, self.connector.cancel(&token)).await {
                    tracing::warn!(error = %err, "could not ask the database to cancel a statement");
                }
                true
            };
            let (sent, result) = tokio::join!(cancelling, timeout(CANCEL_GRACE, &mut call));
            if let Ok(result) = result {
                connection.answered.fetch_add(1, Ordering::Relaxed);
                return Answer::Late(result);
            }
            // Silent: nothing came back although this call asked for its statement to be
            // cancelled. (Another call's request may have cancelled another statement.)
            if sent && connection.answered.load(Ordering::Relaxed) == answered {
                break;
            }
        }
        Answer::Nothing
    }

    /// The open connection, or a new one when there is none or it has closed.
    ///
    /// A connection idle for a while (a frozen container) may have been cut without a word by
    /// a NAT or proxy; it gets a quick ping first, so the call is not the one to find out by
    /// waiting for its whole time limit, and a call that must not be repeated is not sent
    /// into a dead connection.
    async fn client(&self) -> Result<Arc<Connection>, Error> {
        // Lets the connection's task read what arrived while this container was frozen or
        // busy (a server's goodbye, a closed socket), so `is_closed` below is current and a
        // call that must not be repeated is never sent into a connection already gone. Two
        // yields: the first lets the runtime poll the sockets, which schedules the task; the
        // second lets the task run. Microseconds, no round trip.
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        let mut slot = self.open.lock().await;
        if let Some(open) = slot.as_mut() {
            let usable = !open.client.is_closed()
                && (open.last_used.elapsed() < self.settings.idle_check_after
                    || self.is_alive(&open.client).await);
            if usable {
                open.last_used = Instant::now();
                return Ok(open.client.clone());
            }
            tracing::info!("database connection found dead; opening a new one");
        }
        *slot = None;
        let client = Arc::new(Connection {
            // Boxed: connecting (a secret read, TLS, the login) is a deep future, and every
            // call's future would otherwise hold it inline.
            client: Box::pin(self.connect()).await?,
            prepared: self.settings.prepared_statements.then(Default::default),
            answered: AtomicU64::new(0),
            last_cancel: std::sync::Mutex::new(None),
        });
        if self.opened_once.swap(true, Ordering::Relaxed) {
            (self.settings.on_reconnect)();
        }
        *slot = Some(Open {
            client: client.clone(),
            last_used: Instant::now(),
            _floor: TimerFloor::start(self.settings.query_timeout),
        });
        Ok(client)
    }

    async fn is_alive(&self, connection: &Connection) -> bool {
        let limit = LIVENESS_CHECK_LIMIT.min(self.settings.query_timeout);
        matches!(
            timeout(limit, connection.client.simple_query("")).await,
            Ok(Ok(_))
        )
    }

    async fn discard(&self, broken: &Arc<Connection>) {
        let mut slot = self.open.lock().await;
        if slot
            .as_ref()
            .is_some_and(|open| Arc::ptr_eq(&open.client, broken))
        {
            *slot = None;
        }
    }

    /// A connection of the caller's own, with the same login, not shared with other calls;
    /// it closes when the client is dropped. For work that must not share its session
    /// (a transaction across statements: migrations).
    pub async fn connect_own(&self) -> Result<Client, Error> {
        self.connect().await
    }

    async fn connect(&self) -> Result<Client, Error> {
        let started = Instant::now();
        let (client, connection) = self
            .connector
            .connect(self.settings.connect_timeout)
            .await?;
        tokio::spawn(drive(connection));
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "database connected"
        );
        Ok(client)
    }
}

/// What a call on the connection can fail with: the database's error, or a number of rows
/// the statement should never return (the database changed under its caller).
#[derive(Debug)]
pub enum QueryError {
    Db(tokio_postgres::Error),
    RowCount(usize),
}

impl From<tokio_postgres::Error> for QueryError {
    fn from(err: tokio_postgres::Error) -> Self {
        QueryError::Db(err)
    }
}

/// Reads column `index` of a row (by its place in the statement's list: no search by name),
/// a stored `what`. Rows can be written by other software (a NULL, a timestamp beyond what the
/// caller reads): an error of this call naming the column, never a panic.
pub fn column<'a, T: FromSql<'a>>(
    row: &'a Row,
    index: usize,
    what: &'static str,
) -> Result<T, Error> {
    row.try_get(index).map_err(|err| {
        let column = row
            .columns()
            .get(index)
            .map_or_else(|| format!("#{index}"), |column| column.name().to_owned());
        tracing::error!(column, error = %err, "a stored value could not be read");
        Error::Column { column, what }
    })
}

/// One open connection, the statements prepared on it so far, and what its calls past
/// their time limit need to tell a slow statement from a silent connection.
pub struct Connection {
    client: Client,
    /// By SQL text; `None` when prepared statements are off.
    prepared: Option<std::sync::Mutex<HashMap<String, Statement>>>,
    /// Calls that came back so far.
    answered: AtomicU64,
    /// When the last cancel request was sent.
    last_cancel: std::sync::Mutex<Option<Instant>>,
}

/// A statement's parameters, each with its type (so nothing is asked of the server first).
pub type Params<'a> = [(&'a (dyn ToSql + Sync), Type)];

impl Connection {
    /// The tokio-postgres client underneath, for statements run without this wrapper's
    /// statement cache (a benchmark's floor: the same statement, prepared, on this connection).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs `sql`: one round trip. With prepared statements on, the first run of a statement
    /// on this connection prepares it (one round trip more); every later run skips
    /// PostgreSQL's parsing and planning, which cost more than the round trip itself on a
    /// near database. Off, each run is an unnamed statement (`query_typed`), as RDS Proxy and
    /// PgBouncer in transaction mode need.
    pub async fn query(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let Some(statement) = self.prepared(sql, params).await? else {
            return self.client.query_typed(sql, params).await;
        };
        let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(value, _)| *value).collect();
        match self.client.query(&statement, &values).await {
            // "cached plan must not change result type": the schema changed under a prepared
            // statement. Prepare it again; nothing ran, so running it again is safe.
            Err(err) if err.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) => {
                self.forget(sql);
                match self.prepared(sql, params).await? {
                    Some(statement) => self.client.query(&statement, &values).await,
                    None => Err(err),
                }
            }
            result => result,
        }
    }

    /// `query` for at most one row; more is an error, as in tokio-postgres.
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, QueryError> {
        let mut rows = self.query(sql, params).await?;
        match rows.len() {
            0 | 1 => Ok(rows.pop()),
            found => Err(QueryError::RowCount(found)),
        }
    }

    /// `query` for exactly one row; none or more is an error, as in tokio-postgres.
    pub async fn query_one(&self, sql: &str, params: &Params<'_>) -> Result<Row, QueryError> {
        self.query_opt(sql, params)
            .await?
            .ok_or(QueryError::RowCount(0))
    }

    async fn prepared(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Statement>, tokio_postgres::Error> {
        let Some(cache) = &self.prepared else {
            return Ok(None);
        };
        if let Some(statement) = lock(cache).get(sql) {
            return Ok(Some(statement.clone()));
        }
        let types: Vec<Type> = params.iter().map(|(_, kind)| kind.clone()).collect();
        let statement = self.client.prepare_typed(sql, &types).await?;
        lock(cache).insert(sql.to_owned(), statement.clone());
        Ok(Some(statement))
    }

    fn forget(&self, sql: &str) {
        if let Some(cache) = &self.prepared {
            lock(cache).remove(sql);
        }
    }

    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    fn cancelled_within(&self, interval: Duration) -> bool {
        lock(&self.last_cancel).is_some_and(|at| at.elapsed() < interval)
    }

    /// Whether to send a cancel request now: none was sent within `interval`. Notes it.
    fn cancel_due(&self, interval: Duration) -> bool {
        let mut last = lock(&self.last_cancel);
        if last.is_some_and(|at| at.elapsed() < interval) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

/// Locks a mutex held only for map updates: one that was poisoned still holds a usable map.
pub fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the connection's I/O until it ends; the client sees it closed afterwards.
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(err) = connection.await {
        tracing::warn!(error = %err, "database connection ended");
    }
}
