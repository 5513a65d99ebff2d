//! The lease a pass holds on its sync (ARCHITECTURE.md: at most one pass
//! of a sync at a time, across processes): taken before the pass reads
//! anything, renewed in the background while it runs, released when it
//! ends. Every state write of the pass is fenced by it (puente-state).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use puente_state::{Acquired, Holder, Lease, LeaseRow, StateStore};

use crate::{Engine, EngineError};

/// How often a waiting process asks again.
const RETRY: Duration = Duration::from_millis(250);

/// Who this process is, as other processes see it in a lease.
pub fn this_process(command: &str) -> Holder {
    let pid = std::process::id();
    Holder {
        host: gethostname::gethostname().to_string_lossy().into_owned(),
        pid,
        command: command.to_string(),
        node: node(),
        pid_start: process_start(pid),
    }
}

/// This machine's boot and pid namespace (Linux): processes that share it
/// see each other's pids. `None` where the system does not say.
fn node() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{}/{}", boot.trim(), ns.display()))
}

/// When process `pid` started, in clock ticks since boot (`/proc/PID/stat`,
/// field 22); `None` when there is no such process (or no /proc).
fn process_start(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state …`: comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the holder of a lease is a process of this machine that has
/// ended: its lease can be taken over without waiting for it to lapse.
fn holder_is_gone(row: &LeaseRow, me: &Holder) -> bool {
    let (Some(node), Some(started)) = (&row.node, row.pid_start) else {
        return false;
    };
    if me.node.as_ref() != Some(node) {
        return false;
    }
    let Ok(pid) = u32::try_from(row.pid) else {
        return false;
    };
    // Gone, or the pid now belongs to a process started at another time.
    process_start(pid) != Some(started)
}

/// A lease held for the length of a pass.
pub(crate) struct PassLease {
    lease: Lease,
    state: StateStore,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl PassLease {
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Whether another process took the sync over (this pass stalled past
    /// the lease's expiry): the pass must stop before it writes more.
    pub fn check(&self) -> Result<(), EngineError> {
        if self.lost.load(Ordering::Relaxed) {
            Err(EngineError::State(puente_state::StateError::LeaseLost {
                sync: self.lease.sync.clone(),
            }))
        } else {
            Ok(())
        }
    }

    /// Ends the pass's hold on the sync.
    pub async fn release(self) {
        self.renewer.abort();
        if let Err(e) = self.state.release_lease(&self.lease).await {
            tracing::warn!(sync = %self.lease.sync, error = %e, "could not release the lease; it lapses by itself");
        }
    }
}

impl Drop for PassLease {
    fn drop(&mut self) {
        // Released or not (a pass cancelled mid-way), renewing stops here:
        // an unreleased lease lapses after its ttl.
        self.renewer.abort();
    }
}

impl Engine {
    /// Takes the lease of `sync`, waiting up to `wait` while another pass
    /// (in this process or another) holds it.
    pub(crate) async fn take_lease(
        &self,
        sync: &str,
        wait: Duration,
    ) -> Result<PassLease, EngineError> {
        let ttl = self.config.lease_ttl;
        let deadline = Instant::now() + wait;
        let lease = loop {
            match self.state.acquire_lease(sync, &self.holder, ttl).await? {
                Acquired::Taken(lease) => break lease,
                Acquired::Held(holder) if holder_is_gone(&holder, &self.holder) => {
                    tracing::info!(sync, %holder, "the process holding the sync has ended: its lease is taken over");
                    if let Acquired::Taken(lease) = self
                        .state
                        .take_over_lease(&holder, &self.holder, ttl)
                        .await?
                    {
                        break lease;
                    }
                }
                Acquired::Held(holder) => {
                    if Instant::now() + RETRY > deadline {
                        return Err(EngineError::Busy {
                            sync: sync.to_string(),
                            holder: Box::new(holder),
                        });
                    }
                    tracing::debug!(sync, %holder, "sync busy, waiting");
                    tokio::time::sleep(RETRY).await;
                }
            }
        };
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (state, lease, lost) = (self.state.clone(), lease.clone(), lost.clone());
            tokio::spawn(async move {
                let every = (lease.ttl() / 3).max(Duration::from_millis(100));
                loop {
                    tokio::time::sleep(every).await;
                    match state.renew_lease(&lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::error!(sync = %lease.sync, "lease lost: another process took the sync over; this pass stops");
                            lost.store(true, Ordering::Relaxed);
                            return;
                        }
                        // The store is unreachable for a moment: the next
                        // renewal (before expiry) tries again.
                        Err(e) => {
                            tracing::warn!(sync = %lease.sync, error = %e, "lease renewal failed")
                        }
                    }
                }
            })
        };
        Ok(PassLease {
            lease,
            state: self.state.clone(),
            lost,
            renewer,
        })
    }
}
