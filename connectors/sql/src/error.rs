use puente_core::{ConnectorError, ErrorKind, Failure, FailureCategory};
use sqlx::error::ErrorKind as DbKind;

/// A connection failure, with who is at fault.
pub fn connect_error(url: &str, e: sqlx::Error) -> ConnectorError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 28xxx: PostgreSQL auth; 1045/1044: MySQL access denied.
            if code.starts_with("28") || code == "1045" || code == "1044" {
                ConnectorError::new(ErrorKind::Auth, format!("{url}: {}", db.message()))
                    .with_hint("check the user and password in the connection's url secret")
            } else if code == "14" && url.starts_with("sqlite:") {
                // SQLITE_CANTOPEN: most often a file that is not there.
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:")
                    .split('?')
                    .next()
                    .unwrap_or("");
                let why = if std::path::Path::new(path).exists() {
                    format!("{path} cannot be opened: {}", db.message())
                } else {
                    format!("no SQLite database at {path}")
                };
                ConnectorError::config(format!("{url}: {why}")).with_hint(
                    "fix the path (a relative one is read from the config file's folder), or create the database",
                )
            } else if code == "3D000" || code == "1049" {
                ConnectorError::config(format!("{url}: {}", db.message()))
                    .with_hint("create the database or fix its name in the url")
            } else {
                ConnectorError::new(ErrorKind::External, format!("{url}: {}", db.message()))
            }
        }
        _ => ConnectorError::new(
            ErrorKind::Unreachable,
            format!("{url}: cannot connect: {e}"),
        )
        .with_hint("is the database server running and reachable from here?"),
    }
}

/// Whether the error concerns the whole connection rather than one row.
pub fn is_connection_error(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_)
    )
}

/// A whole-call error from a read or a write.
pub fn call_error(what: &str, e: sqlx::Error) -> ConnectorError {
    if is_connection_error(&e) {
        return ConnectorError::new(ErrorKind::Unreachable, format!("{what}: {e}"))
            .with_hint("the database went away; the run can be repeated safely");
    }
    if let sqlx::Error::Database(db) = &e {
        let code = db.code().unwrap_or_default();
        if code == "42P01" || code == "1146" || db.message().contains("no such table") {
            return ConnectorError::config(format!("{what}: {}", db.message()))
                .with_hint("check the object name in the sync's endpoint");
        }
        if code == "42501" || code == "1142" || code == "1143" {
            return ConnectorError::new(ErrorKind::Auth, format!("{what}: {}", db.message()))
                .with_hint("grant the connection's user access to this table");
        }
    }
    ConnectorError::new(ErrorKind::External, format!("{what}: {e}"))
}

/// The per-record failure for an error one row's write got.
pub fn row_failure(table: &str, e: &sqlx::Error) -> Failure {
    let sqlx::Error::Database(db) = e else {
        return Failure::new(FailureCategory::Server, format!("table {table}: {e}"));
    };
    let msg = format!("table {table}: {}", db.message());
    let code = db.code().unwrap_or_default().to_string();
    let category = match db.kind() {
        DbKind::UniqueViolation => FailureCategory::Duplicate,
        DbKind::ForeignKeyViolation => {
            return Failure::new(FailureCategory::Validation, msg).with_hint(
                "the referenced parent row does not exist on the target: sync the parent object first (map the field with `ref`)",
            )
        }
        DbKind::NotNullViolation | DbKind::CheckViolation => FailureCategory::Validation,
        _ => match code.as_str() {
            // lock timeouts, deadlocks, serialization failures, busy
            "40001" | "40P01" | "55P03" | "57014" | "1205" | "1213" | "5" | "6" => {
                FailureCategory::Server
            }
            "42501" | "1142" | "1143" => FailureCategory::Permission,
            c if c.starts_with("22") || c.starts_with("23") => FailureCategory::Validation,
            "1406" | "1264" | "1366" | "1292" | "1265" | "1048" | "3819" | "1452" => {
                FailureCategory::Validation
            }
            _ => FailureCategory::Server,
        },
    };
    Failure::new(category, msg)
}
