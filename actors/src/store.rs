//! The store: one [`Store`] enum over a SQLite and a PostgreSQL pool.
//!
//! Queries are runtime `sqlx::query` calls (no `sqlx::Any`, no compile-time macros).
//! Each method body is written once and compiled twice, once per backend, by the
//! [`on_pool!`] macro: SQL uses `$N` placeholders, which both SQLite and PostgreSQL accept,
//! and every timestamp is a `BIGINT` of Unix milliseconds, so the two schemas stay
//! identical in shape. Where the dialects differ, the SQL is chosen per backend inside
//! the method. Every mutation that must leave an audit trail writes the audit row in the
//! same transaction: nothing is half-written.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

mod agents;
mod api_keys;
mod audit;
mod callbacks;
mod calls;
mod campaigns;
mod completion;
mod evaluations;
#[cfg(test)]
pub(crate) mod fixtures;
mod function_calls;
mod governance;
mod idempotency;
mod live_calls;
mod models;
mod nodes;
mod phone_routes;
mod queues;
mod recordings;
mod rollouts;
mod sessions;
mod signals;
mod tenants;
mod views;
mod webhooks;

pub use api_keys::KeyLookup;
pub use calls::StatusUpdate;
pub use campaigns::{ClaimedAttempt, CompletedAttempt, Settlement};
pub use completion::{CompletedCall, CompletedSession, Completion};
pub use evaluations::{
    EnqueuedJob, Evaluation, EvaluationBucket, EvaluationFilter, EvaluationJob,
    EvaluationJobStatus, EvaluationMaterial, FinishedEvaluation, JudgeUsage, MaterialTurn,
    NewEvaluationJob, Review, SessionRubric, VersionFigures,
};
pub use function_calls::{
    FunctionCall, FunctionCallStatus, Handoff, NewFunctionCall, PriorInvocation, SettledCall,
    WarmTransfer,
};
pub use governance::LaunchRoute;
pub use models::*;
pub use nodes::{NodeRecord, OrphanCall, StaleNode};
pub use recordings::{
    NewRecording, RecordingCallback, RecordingRecord, RecordingUpsert, SweepCandidate,
};
pub use rollouts::{RolloutDecision, RolloutPolicy, RolloutStatus, Stage};
pub use sessions::{EndedSessions, LegEnd, SessionStatus, Usage};
pub use signals::{EdgeSignal, NodeScrape, SignalKind};
pub use views::{AuthFailure, StoredAuthFailure, StoredRoutingDiagnostic, ViewRetention};
pub use webhooks::{
    AttemptResult, DeliveryFilter, DeliveryStatus, FinishedAttempt, NewEvent, QueuedEvent,
    Redelivery, WebhookAttempt, WebhookDelivery,
};

/// Migrations for SQLite, embedded at build time.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
/// Migrations for PostgreSQL, embedded at build time (same versions as SQLite).
pub static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Errors of the store boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error")]
    Db(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The `DATABASE_URL` scheme names no supported backend.
    #[error("unsupported database url scheme (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// A stored value could not be interpreted.
    #[error("corrupt stored value in {0}")]
    Corrupt(&'static str),
    /// A uniqueness rule was violated (the constraint named).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// A secret could not be sealed or opened.
    #[error("secret storage")]
    Crypto(#[from] crate::crypto::CryptoError),
    /// A value was refused before anything was written: the field named, and why (a bad
    /// value, or a reference to a row the tenant does not own).
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl StoreError {
    /// True when the database rejected a write because of a unique constraint.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Db(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

/// A page of a list query.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// Total number of rows matching the filter.
    pub total: i64,
}

/// The database, SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub enum Store {
    /// A SQLite file (WAL mode) or in-memory database.
    Sqlite(SqlitePool),
    /// A PostgreSQL pool.
    Postgres(PgPool),
}

/// Expands `$body` once per backend with `$pool` bound to that backend's pool.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool) => $body,
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

impl Store {
    /// Connects to `url` (`sqlite://path`, `sqlite::memory:` or `postgres://…`).
    /// A SQLite file and its folder are created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5))
                .pragma("temp_store", "memory");
            if let Some(parent) = Path::new(opts.get_filename()).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            Ok(Store::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?.application_name("stateset-voice");
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            Ok(Store::Postgres(pool))
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// Applies pending migrations of this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(pool) => SQLITE_MIGRATOR.run(pool).await?,
            Store::Postgres(pool) => POSTGRES_MIGRATOR.run(pool).await?,
        }
        Ok(())
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Probes the database: one `SELECT 1` round trip, timed, and the pool's use.
    pub async fn probe(&self) -> Result<DbProbe, StoreError> {
        let started = std::time::Instant::now();
        self.ping().await?;
        let round_trip = started.elapsed();
        let (size, idle, max) = on_pool!(self, pool => (
            pool.size(),
            pool.num_idle(),
            pool.options().get_max_connections(),
        ));
        Ok(DbProbe {
            backend: self.backend(),
            round_trip,
            connections: size,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            max_connections: max,
        })
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

/// What a database probe measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbProbe {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// One `SELECT 1`, from asking for a connection to the answer.
    pub round_trip: Duration,
    /// Connections open in the pool.
    pub connections: u32,
    /// Of which idle.
    pub idle: u32,
    /// The pool's limit.
    pub max_connections: u32,
}

/// Converts a `u32` list limit / offset into the `i64` the drivers bind.
pub(crate) fn as_i64(v: u32) -> i64 {
    i64::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn versions(dir: &str) -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .expect("migrations dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn both_backends_have_the_same_migration_versions_and_names() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations");
        let sqlite = versions(&format!("{root}/sqlite"));
        let postgres = versions(&format!("{root}/postgres"));
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, postgres);
        let embedded_sqlite: Vec<i64> = SQLITE_MIGRATOR.iter().map(|m| m.version).collect();
        let embedded_pg: Vec<i64> = POSTGRES_MIGRATOR.iter().map(|m| m.version).collect();
        assert_eq!(embedded_sqlite, embedded_pg);
    }

    /// The one place the two dialects may differ: PostgreSQL spelling → SQLite spelling.
    const DIALECT: [(&str, &str); 2] = [
        (
            "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
        ),
        ("BYTEA", "BLOB"),
    ];

    /// A migration's statements with whitespace collapsed and comments kept (they document
    /// the same change in both trees), in SQLite spelling.
    fn normalized(sql: &str, from_postgres: bool) -> Vec<String> {
        let mut text = sql.to_owned();
        if from_postgres {
            for (pg, lite) in DIALECT {
                text = text.replace(pg, lite);
            }
        }
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.is_empty())
            .collect()
    }

    #[test]
    fn both_backends_have_the_same_migration_content_up_to_the_dialect_table() {
        for (lite, pg) in SQLITE_MIGRATOR.iter().zip(POSTGRES_MIGRATOR.iter()) {
            let a = normalized(lite.sql.as_ref(), false);
            let b = normalized(pg.sql.as_ref(), true);
            if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
                panic!(
                    "migration {} differs between the trees at statement line {}:\n  sqlite:   {:?}\n  postgres: {:?}",
                    lite.version,
                    i + 1,
                    a.get(i),
                    b.get(i)
                );
            }
        }
    }

    #[test]
    fn the_content_check_notices_a_divergence() {
        let lite = "CREATE TABLE t (\n  id INTEGER PRIMARY KEY AUTOINCREMENT,\n  b BLOB\n);";
        let pg = "CREATE TABLE t (\n  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n  b BYTEA\n);";
        assert_eq!(normalized(lite, false), normalized(pg, true));
        let drifted = "CREATE TABLE t (\n  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n  b BYTEA NOT NULL\n);";
        assert_ne!(normalized(lite, false), normalized(drifted, true));
    }
}
