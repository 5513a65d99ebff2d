//! Puente's vocabulary: canonical values, records, schemas, failures and the
//! [`Connector`] / [`Object`] traits every connector implements.
//!
//! This crate knows no database, no HTTP and no state store.

pub mod config;
mod connector;
mod error;
pub mod normalize;
mod record;
mod schema;
mod value;

pub use connector::{
    Capabilities, ChangeDetection, Connector, Cursor, Object, ObjectSpec, Page, Push, TokenCache,
    Usage, WriteOp, WriteOutcome,
};
pub use error::{ConnectorError, ErrorKind, Failure, FailureCategory};
pub use record::{Fields, Record};
pub use schema::{FieldSchema, FieldType, ObjectSchema};
pub use value::{parse_date, parse_datetime, ConvertError, Value};

/// Whether a presented secret (a token) equals the expected one, compared
/// in constant time so its content leaks nothing through timing.
pub fn secret_eq(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// One of the two sides of a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }
    pub fn parse(s: &str) -> Option<Side> {
        match s {
            "a" => Some(Side::A),
            "b" => Some(Side::B),
            _ => None,
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
