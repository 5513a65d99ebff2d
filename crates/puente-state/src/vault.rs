//! Credentials sealed at rest: connection tokens, database URLs and the OAuth
//! tokens a connector refreshes live in the `secrets` table encrypted with
//! XChaCha20-Poly1305 under the operator's key, which never enters the store.
//!
//! Each row carries the id of the key that sealed it (a hash, not the key),
//! so a wrong key is named as such instead of failing as "corrupt". The
//! secret's name is bound into the ciphertext as associated data: a sealed
//! value copied onto another name does not open.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::store::{now, StateError, StateStore};

type Result<T> = std::result::Result<T, StateError>;

/// The operator's 32-byte key. Its `Debug` shows the key id only.
#[derive(Clone)]
pub struct SecretKey {
    bytes: [u8; 32],
    id: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

impl SecretKey {
    /// A new random key.
    pub fn generate() -> SecretKey {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        SecretKey::from_bytes(bytes)
    }

    fn from_bytes(bytes: [u8; 32]) -> SecretKey {
        let digest = Sha256::new()
            .chain_update(b"puente secret key id\0")
            .chain_update(bytes)
            .finalize();
        let id = hex::encode(&digest[..6]);
        SecretKey { bytes, id }
    }

    /// Reads a key written as base64 (standard or URL-safe) or as 64 hex
    /// digits, surrounding whitespace ignored. The error never repeats the
    /// text it was given.
    pub fn parse(text: &str) -> std::result::Result<SecretKey, String> {
        let t = text.trim();
        let decoded = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(t).ok()
        } else {
            STANDARD
                .decode(t)
                .or_else(|_| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')))
                .ok()
        };
        match decoded.map(<[u8; 32]>::try_from) {
            Some(Ok(bytes)) => Ok(SecretKey::from_bytes(bytes)),
            Some(Err(v)) => Err(format!(
                "the key is {} bytes long; a key is 32 bytes (`puente secrets keygen` makes one)",
                v.len()
            )),
            None => Err(
                "the key is neither base64 nor hex; `puente secrets keygen` makes one".to_string(),
            ),
        }
    }

    /// The key as base64, for a key file.
    pub fn encode(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    /// A short, public name of the key (a hash of it).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.bytes).into())
    }

    fn seal(&self, name: &str, value: &str) -> (String, String) {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = aad(name);
        let sealed = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("encryption of an in-memory buffer cannot fail");
        (STANDARD.encode(nonce), STANDARD.encode(sealed))
    }

    fn open(&self, name: &str, nonce: &str, sealed: &str) -> Result<String> {
        let broken = || {
            StateError::Secret {
            name: name.to_string(),
            message: "its sealed value does not open with this key (it was altered, or copied from another name)".into(),
            fix: "store it again with `puente secrets set`".into(),
        }
        };
        let nonce = STANDARD.decode(nonce).map_err(|_| broken())?;
        let sealed = STANDARD.decode(sealed).map_err(|_| broken())?;
        if nonce.len() != 24 {
            return Err(broken());
        }
        let aad = aad(name);
        let plain = self
            .cipher()
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| broken())?;
        String::from_utf8(plain).map_err(|_| broken())
    }
}

fn aad(name: &str) -> Vec<u8> {
    let mut v = b"puente secret\0".to_vec();
    v.extend_from_slice(name.as_bytes());
    v
}

/// A stored secret as listings show it: never its value.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SecretInfo {
    pub name: String,
    pub key_id: String,
    pub updated_at: String,
}

fn wrong_key(name: &str, sealed_by: &str, given: &SecretKey) -> StateError {
    StateError::Secret {
        name: name.to_string(),
        message: format!(
            "it was sealed with key {sealed_by}, but the key given is {}",
            given.id()
        ),
        fix: "set PUENTE_SECRET_KEY (or PUENTE_SECRET_KEY_FILE) to the key it was sealed with; \
              after a rotation, use the new key"
            .into(),
    }
}

impl StateStore {
    /// Seals `value` under `name` (replacing what was there).
    pub async fn put_secret(&self, name: &str, value: &str, key: &SecretKey) -> Result<()> {
        let (nonce, sealed) = key.seal(name, value);
        sqlx::query(&self.sql(
            "INSERT INTO secrets (name, key_id, nonce, sealed, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) DO UPDATE SET key_id = excluded.key_id, nonce = excluded.nonce,
               sealed = excluded.sealed, updated_at = excluded.updated_at",
        ))
        .bind(name)
        .bind(key.id())
        .bind(nonce)
        .bind(sealed)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The secret named `name`, opened with `key`; `None` if there is none.
    pub async fn secret(&self, name: &str, key: &SecretKey) -> Result<Option<String>> {
        let row =
            sqlx::query(&self.sql("SELECT key_id, nonce, sealed FROM secrets WHERE name = $1"))
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let key_id: String = row.try_get("key_id")?;
        if key_id != key.id() {
            return Err(wrong_key(name, &key_id, key));
        }
        key.open(name, row.try_get("nonce")?, row.try_get("sealed")?)
            .map(Some)
    }

    /// Every stored secret's name, key id and time, without values.
    pub async fn secret_names(&self) -> Result<Vec<SecretInfo>> {
        let rows =
            sqlx::query(&self.sql("SELECT name, key_id, updated_at FROM secrets ORDER BY name"))
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(SecretInfo {
                    name: r.try_get("name")?,
                    key_id: r.try_get("key_id")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Removes a secret; false if there was none.
    pub async fn delete_secret(&self, name: &str) -> Result<bool> {
        let done = sqlx::query(&self.sql("DELETE FROM secrets WHERE name = $1"))
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Re-seals every secret sealed with `old` under `new`, in one
    /// transaction: either all move or none do. Secrets already under `new`
    /// are left (a rotation that stopped half way can be run again); one
    /// sealed with any other key stops the rotation, naming it.
    pub async fn rotate_secrets(&self, old: &SecretKey, new: &SecretKey) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let rows =
            sqlx::query(&self.sql("SELECT name, key_id, nonce, sealed FROM secrets ORDER BY name"))
                .fetch_all(&mut *tx)
                .await?;
        let mut moved = 0;
        for r in &rows {
            let name: String = r.try_get("name")?;
            let key_id: String = r.try_get("key_id")?;
            if key_id == new.id() {
                continue;
            }
            if key_id != old.id() {
                return Err(wrong_key(&name, &key_id, old));
            }
            let value = old.open(&name, r.try_get("nonce")?, r.try_get("sealed")?)?;
            let (nonce, sealed) = new.seal(&name, &value);
            sqlx::query(&self.sql(
                "UPDATE secrets SET key_id = $1, nonce = $2, sealed = $3, updated_at = $4 WHERE name = $5",
            ))
            .bind(new.id())
            .bind(nonce)
            .bind(sealed)
            .bind(now())
            .bind(&name)
            .execute(&mut *tx)
            .await?;
            moved += 1;
        }
        tx.commit().await?;
        Ok(moved)
    }
}
