//! Leases: at most one pass of a sync at a time, across every process that
//! shares the state store (`puente sync` from cron, `puente serve`, a second
//! machine on PostgreSQL).
//!
//! A lease is a row per sync: who holds it (host, pid, command), since when,
//! and until when. The holder renews it while its pass runs; a holder that
//! dies stops renewing, and its lease expires. Expiry is measured on the
//! store's own clock, so machines whose clocks disagree still agree on it.
//!
//! Every state write of a pass is fenced: [`StateStore::commit`] and
//! [`StateStore::add_intents`] first renew the lease they are given, in the
//! same transaction, and fail with [`StateError::LeaseLost`] if it is no
//! longer theirs. A holder that stalled past its expiry (a suspended
//! laptop, a long pause) and lost the sync to another process therefore
//! cannot record anything, nor announce a create, after it wakes.

use std::time::Duration;

use rand::RngCore;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::store::{now, Backend, Result, StateError, StateStore};

/// Who asks for a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// What runs the pass: `puente sync`, `puente serve`, …
    pub command: String,
    /// The machine's boot and process namespace, where the system tells
    /// them: a process with the same node can check whether `pid` lives.
    pub node: Option<String>,
    /// When the process started (in the node's clock ticks since boot), so
    /// a pid reused by another process is not taken for the holder.
    pub pid_start: Option<i64>,
}

/// A lease held: the proof that fences this pass's writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub sync: String,
    token: String,
    ttl: Duration,
}

impl Lease {
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// A lease as stored: who holds a sync now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRow {
    /// Which taking of the lease this is (a takeover needs it).
    token: String,
    pub sync: String,
    pub host: String,
    pub pid: i64,
    pub command: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub renewed_at: String,
    /// When the lease lapses unless renewed (RFC 3339, UTC).
    pub expires_at: String,
    pub node: Option<String>,
    pub pid_start: Option<i64>,
}

impl std::fmt::Display for LeaseRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` (pid {} on {}) since {}",
            self.command,
            self.pid,
            self.host,
            short_time(&self.started_at)
        )
    }
}

/// `2026-12-01T17:02:03.123456Z` → `2026-12-01 17:02:03 UTC`.
fn short_time(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => rfc3339.to_string(),
    }
}

/// The answer to a request for a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// Ours until it expires or is released.
    Taken(Lease),
    /// Someone else's, live.
    Held(LeaseRow),
}

impl StateStore {
    /// The store's clock, in milliseconds since the epoch, as SQL.
    fn now_ms_sql(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// Takes the lease of `sync` for `ttl` if nobody holds it, or if its
    /// holder let it expire. Runs still marked running for this sync were
    /// left by a holder that died: they are marked `interrupted`.
    pub async fn acquire_lease(
        &self,
        sync: &str,
        holder: &Holder,
        ttl: Duration,
    ) -> Result<Acquired> {
        self.take_lease(sync, holder, ttl, None).await
    }

    /// Takes over a lease whose holder is known to be dead (a process on
    /// the same machine that no longer runs), without waiting for it to
    /// lapse. Nothing happens if the lease changed hands meanwhile.
    pub async fn take_over_lease(
        &self,
        dead: &LeaseRow,
        holder: &Holder,
        ttl: Duration,
    ) -> Result<Acquired> {
        self.take_lease(&dead.sync, holder, ttl, Some(&dead.token))
            .await
    }

    async fn take_lease(
        &self,
        sync: &str,
        holder: &Holder,
        ttl: Duration,
        dead: Option<&str>,
    ) -> Result<Acquired> {
        let mut raw = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = hex::encode(raw);
        let at = now();
        let clock = self.now_ms_sql();
        // One statement: atomic on both backends. A live lease is left alone
        // (the WHERE of the upsert), an expired one is taken over.
        let sql = self.sql(&format!(
            "INSERT INTO leases (sync, token, host, pid, command, started_at, renewed_at, expires_ms, node, pid_start)
             VALUES ($1, $2, $3, $4, $5, $6, $7, {clock} + $8, $9, $10)
             ON CONFLICT (sync) DO UPDATE SET token = excluded.token, host = excluded.host,
               pid = excluded.pid, command = excluded.command, started_at = excluded.started_at,
               renewed_at = excluded.renewed_at, expires_ms = excluded.expires_ms,
               node = excluded.node, pid_start = excluded.pid_start
             WHERE leases.expires_ms <= {clock} OR leases.token = $11"
        ));
        sqlx::query(&sql)
            .bind(sync)
            .bind(token.clone())
            .bind(holder.host.clone())
            .bind(i64::from(holder.pid))
            .bind(holder.command.clone())
            .bind(at.clone())
            .bind(at)
            .bind(ttl_ms(ttl))
            .bind(holder.node.clone())
            .bind(holder.pid_start)
            .bind(dead.unwrap_or("").to_string())
            .execute(&self.pool)
            .await?;
        let row = self.lease_row(sync).await?;
        match row {
            Some((t, _)) if t == token => {
                sqlx::query(&self.sql(
                    "UPDATE runs SET status = 'interrupted', finished_at = $1,
                     error = 'the process running this pass stopped before it finished; the next pass recovered its work'
                     WHERE sync = $2 AND status = 'running'",
                ))
                .bind(now())
                .bind(sync)
                .execute(&self.pool)
                .await?;
                Ok(Acquired::Taken(Lease {
                    sync: sync.to_string(),
                    token,
                    ttl,
                }))
            }
            Some((_, held)) => Ok(Acquired::Held(held)),
            // Released between the two statements: ask again.
            None => Box::pin(self.take_lease(sync, holder, ttl, None)).await,
        }
    }

    /// Extends a lease by its ttl from now. `false` when it is no longer
    /// held by this lease (it expired and another process took it).
    pub async fn renew_lease(&self, lease: &Lease) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let ok = self.fence(&mut tx, lease).await.is_ok();
        tx.commit().await?;
        Ok(ok)
    }

    /// Gives a lease up (the pass is over).
    pub async fn release_lease(&self, lease: &Lease) -> Result<()> {
        sqlx::query(&self.sql("DELETE FROM leases WHERE sync = $1 AND token = $2"))
            .bind(&lease.sync)
            .bind(&lease.token)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Renews `lease` inside `tx`, or fails with `LeaseLost`: the first
    /// statement of every fenced transaction.
    pub(crate) async fn fence(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        lease: &Lease,
    ) -> Result<()> {
        let clock = self.now_ms_sql();
        let sql = self.sql(&format!(
            "UPDATE leases SET renewed_at = $1, expires_ms = {clock} + $2
             WHERE sync = $3 AND token = $4 AND expires_ms > {clock}"
        ));
        let done = sqlx::query(&sql)
            .bind(now())
            .bind(ttl_ms(lease.ttl))
            .bind(&lease.sync)
            .bind(&lease.token)
            .execute(&mut **tx)
            .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StateError::LeaseLost {
                sync: lease.sync.clone(),
            })
        }
    }

    /// Who holds `sync` now, if anyone (an expired lease is nobody's).
    pub async fn lease_holder(&self, sync: &str) -> Result<Option<LeaseRow>> {
        Ok(self.live_leases(Some(sync)).await?.pop())
    }

    /// Every live lease: the syncs running a pass now, and where.
    pub async fn leases(&self) -> Result<Vec<LeaseRow>> {
        self.live_leases(None).await
    }

    async fn live_leases(&self, sync: Option<&str>) -> Result<Vec<LeaseRow>> {
        let clock = self.now_ms_sql();
        let sql = self.sql(&format!(
            "SELECT {LEASE_COLS}, {clock} AS now_ms
             FROM leases WHERE expires_ms > {clock} AND ($1 = '' OR sync = $2) ORDER BY sync"
        ));
        let rows = sqlx::query(&sql)
            .bind(sync.unwrap_or(""))
            .bind(sync.unwrap_or(""))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(lease_of).collect()
    }

    /// The stored lease of `sync`, live or not, with its token.
    async fn lease_row(&self, sync: &str) -> Result<Option<(String, LeaseRow)>> {
        let clock = self.now_ms_sql();
        let sql = self.sql(&format!(
            "SELECT {LEASE_COLS}, {clock} AS now_ms FROM leases WHERE sync = $1"
        ));
        let row = sqlx::query(&sql)
            .bind(sync)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .as_ref()
            .map(lease_of)
            .transpose()?
            .map(|l| (l.token.clone(), l)))
    }
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4)
}

const LEASE_COLS: &str =
    "token, sync, host, pid, command, started_at, renewed_at, expires_ms, node, pid_start";

fn lease_of(r: &AnyRow) -> Result<LeaseRow> {
    let expires_ms: i64 = r.try_get("expires_ms")?;
    let now_ms: i64 = r.try_get("now_ms")?;
    // Shown on this machine's clock: the time left, counted on the store's.
    let expires_at = chrono::Utc::now() + chrono::Duration::milliseconds(expires_ms - now_ms);
    Ok(LeaseRow {
        token: r.try_get("token")?,
        sync: r.try_get("sync")?,
        host: r.try_get("host")?,
        pid: r.try_get("pid")?,
        command: r.try_get("command")?,
        started_at: r.try_get("started_at")?,
        renewed_at: r.try_get("renewed_at")?,
        expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        node: r.try_get("node")?,
        pid_start: r.try_get("pid_start")?,
    })
}
