//! A sandbox's state kept in a JSON file: loaded at start (or made fresh
//! when there is no file), saved a moment after it changes (one write for a
//! burst of changes), and saved once more when the sandbox stops. A save
//! writes a temporary file and renames it, so a crash never leaves half a
//! file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::Error;

/// A value behind a lock, and the file that keeps it (if any).
pub struct Persisted<T> {
    value: Mutex<T>,
    file: Option<PathBuf>,
    debounce: Duration,
    changed: Notify,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Persisted<T> {
    /// The state in `file` if it exists, else `fresh()`. Without a file,
    /// nothing is ever written.
    pub fn open(file: Option<PathBuf>, fresh: impl FnOnce() -> T) -> Result<Persisted<T>, Error> {
        let value = match &file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::ReadState {
                    path: path.clone(),
                    source,
                })?;
                serde_json::from_str(&text).map_err(|source| Error::ParseState {
                    path: path.clone(),
                    source,
                })?
            }
            _ => fresh(),
        };
        Ok(Persisted {
            value: Mutex::new(value),
            file,
            debounce: Duration::from_millis(500),
            changed: Notify::new(),
        })
    }

    /// How long a save waits after a change, so a burst is saved once
    /// (500 ms unless set).
    pub fn with_debounce(mut self, debounce: Duration) -> Persisted<T> {
        self.debounce = debounce;
        self
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.value.lock().expect("sandbox state")
    }

    /// Says the state changed: the saver writes it soon.
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// Writes the state now (nothing without a file).
    pub fn save(&self) -> Result<(), Error> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let text = serde_json::to_string(&*self.lock()).map_err(Error::Serialise)?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|source| Error::SaveState {
                path: path.clone(),
                source,
            })
    }

    /// Saves after each change (debounced) until the task is aborted; a
    /// failed save is logged and retried at the next change. `None` without
    /// a file.
    pub fn spawn_saver(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        self.file.as_ref()?;
        let me = self.clone();
        Some(tokio::spawn(async move {
            loop {
                me.changed.notified().await;
                tokio::time::sleep(me.debounce).await;
                me.save_or_log();
            }
        }))
    }

    /// [`save`](Self::save), with a failure logged (for shutdown paths that
    /// cannot return it).
    pub fn save_or_log(&self) {
        if let Err(e) = self.save() {
            tracing::error!(error = %e, "sandbox state not saved");
        }
    }
}
