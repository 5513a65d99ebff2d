//! `puente secrets`: credentials sealed in the state store, referred to from
//! the config as `{ vault = "NAME" }`.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use puente_engine::{config, EngineError};
use puente_state::{SecretKey, StateStore};

#[derive(Subcommand)]
pub enum Action {
    /// Print a new random key; keep it in a file that PUENTE_SECRET_KEY_FILE
    /// (or [state] key = { file = "…" }) names.
    Keygen,
    /// Seal a secret read from standard input (never from the command line,
    /// which other users of the machine can read).
    Set { name: String },
    /// The stored secrets: names, key ids and times, never values.
    List,
    /// Remove a secret.
    Rm { name: String },
    /// Re-seal every secret under a new key, all or none; then make the new
    /// key the one Puente reads.
    Rotate {
        /// The file holding the new key (`puente secrets keygen > FILE`).
        #[arg(long)]
        new_key_file: PathBuf,
    },
}

pub async fn run(config_path: &Path, action: Action) -> Result<()> {
    if let Action::Keygen = action {
        outln!("{}", SecretKey::generate().encode());
        return Ok(());
    }
    let src = std::fs::read_to_string(config_path)
        .with_context(|| format!("cannot read the config {}", config_path.display()))?;
    let (url, key) = config::state_settings(&src, config_path).map_err(EngineError::Config)?;
    let need_key = || {
        key.clone().ok_or_else(|| {
            anyhow!(
                "no secret key is set\n  fix: run `puente secrets keygen > secret.key` once, keep the file safe, and export {}=secret.key (or set [state] key = {{ file = \"…\" }})",
                config::KEY_FILE_ENV
            )
        })
    };
    let store = StateStore::open(&url).await?;
    match action {
        Action::Keygen => unreachable!("handled above"),
        Action::Set { name } => {
            let key = need_key()?;
            check_name(&name)?;
            if std::io::stdin().is_terminal() {
                eprintln!("value of {name} (then Enter and Ctrl-D):");
            }
            let mut value = String::new();
            std::io::stdin()
                .read_to_string(&mut value)
                .context("reading the value from standard input")?;
            let value = value.trim_end_matches(['\r', '\n']);
            if value.is_empty() {
                bail!("no value for {name} on standard input\n  fix: printf %s \"$VALUE\" | puente secrets set {name}");
            }
            store.put_secret(&name, value, &key).await?;
            outln!("sealed {name} with key {}", key.id());
        }
        Action::List => {
            let rows = store.secret_names().await?;
            if rows.is_empty() {
                outln!("the vault is empty");
            }
            for r in rows {
                let mark = match &key {
                    Some(k) if k.id() != r.key_id => "  (not the current key)",
                    _ => "",
                };
                outln!("{:<32} key {}  {}{mark}", r.name, r.key_id, r.updated_at);
            }
        }
        Action::Rm { name } => {
            if !store.delete_secret(&name).await? {
                bail!("the vault holds no secret named {name:?}");
            }
            outln!("removed {name}");
        }
        Action::Rotate { new_key_file } => {
            let old = need_key()?;
            let text = std::fs::read_to_string(&new_key_file)
                .with_context(|| format!("cannot read {}", new_key_file.display()))?;
            let new =
                SecretKey::parse(&text).map_err(|e| anyhow!("{}: {e}", new_key_file.display()))?;
            let moved = store.rotate_secrets(&old, &new).await?;
            outln!(
                "re-sealed {moved} secrets from key {} to key {}\n  next: point {} (or [state] key) at {}",
                old.id(),
                new.id(),
                config::KEY_FILE_ENV,
                new_key_file.display()
            );
        }
    }
    store.close().await;
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        bail!("secret name {name:?}: use letters, digits, -, _, . and : only");
    }
    Ok(())
}
