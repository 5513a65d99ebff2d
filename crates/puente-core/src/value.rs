use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{FailureCategory, FieldType};

/// A field value in canonical form. Build values with the constructors
/// ([`Value::text`], [`Value::decimal`], …) or [`Value::canonical`], which
/// keep the invariants comparisons rely on: no empty text (it is `Null`),
/// decimals normalised (`1500.50` = `1500.5`), datetimes in UTC.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum Value {
    #[default]
    Null,
    Text(String),
    Int(i64),
    Decimal(#[serde(with = "rust_decimal::serde::str")] Decimal),
    Bool(bool),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    Enum(String),
    MultiEnum(BTreeSet<String>),
    Email(String),
    Phone(String),
    Ref(String),
}

/// Why a value cannot take a field's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvertError {
    pub category: FailureCategory,
    pub message: String,
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn mapping(msg: String) -> ConvertError {
    ConvertError {
        category: FailureCategory::Mapping,
        message: msg,
    }
}

fn validation(msg: String) -> ConvertError {
    ConvertError {
        category: FailureCategory::Validation,
        message: msg,
    }
}

impl Value {
    pub fn text(s: impl Into<String>) -> Value {
        let s = s.into();
        if s.is_empty() {
            Value::Null
        } else {
            Value::Text(s)
        }
    }

    pub fn decimal(d: Decimal) -> Value {
        Value::Decimal(d.normalize())
    }

    pub fn datetime(dt: DateTime<Utc>) -> Value {
        Value::DateTime(dt)
    }

    /// Restores the canonical invariants on a value built by hand or
    /// deserialised from storage.
    pub fn canonical(self) -> Value {
        match self {
            Value::Text(s) | Value::Enum(s) | Value::Email(s) | Value::Phone(s) | Value::Ref(s)
                if s.is_empty() =>
            {
                Value::Null
            }
            Value::MultiEnum(s) if s.is_empty() => Value::Null,
            Value::Decimal(d) => Value::Decimal(d.normalize()),
            v => v,
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Text(s) | Value::Enum(s) | Value::Email(s) | Value::Phone(s) | Value::Ref(s) => {
                s.is_empty()
            }
            Value::MultiEnum(s) => s.is_empty(),
            _ => false,
        }
    }

    /// The text of a text-like value (text, enum, e-mail, phone,
    /// reference), borrowed; `None` for any other.
    pub fn text_ref(&self) -> Option<&str> {
        match self {
            Value::Text(s) | Value::Enum(s) | Value::Email(s) | Value::Phone(s) | Value::Ref(s) => {
                Some(s)
            }
            _ => None,
        }
    }

    /// The value as plain text (what a CSV cell or a text column would hold).
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Value::Null => return None,
            Value::Text(s) | Value::Enum(s) | Value::Email(s) | Value::Phone(s) | Value::Ref(s) => {
                s.clone()
            }
            Value::Int(i) => i.to_string(),
            Value::Decimal(d) => d.normalize().to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Date(d) => d.format("%Y-%m-%d").to_string(),
            Value::DateTime(dt) => dt.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            Value::MultiEnum(set) => set.iter().cloned().collect::<Vec<_>>().join(";"),
        })
    }

    /// Equality after canonicalisation, across representations that mean the
    /// same thing: `Int(5)` = `Decimal(5)`, `Text("a")` = `Enum("a")`, empty = null.
    pub fn same(&self, other: &Value) -> bool {
        if self.is_empty() || other.is_empty() {
            return self.is_empty() && other.is_empty();
        }
        match (self, other) {
            (Value::Int(a), Value::Decimal(b)) | (Value::Decimal(b), Value::Int(a)) => {
                Decimal::from(*a) == *b
            }
            (Value::Decimal(a), Value::Decimal(b)) => a.normalize() == b.normalize(),
            (Value::Date(a), Value::DateTime(b)) | (Value::DateTime(b), Value::Date(a)) => {
                b.time() == chrono::NaiveTime::MIN && b.date_naive() == *a
            }
            (Value::MultiEnum(a), Value::MultiEnum(b)) => a == b,
            (a, b) if a.is_stringish() && b.is_stringish() => a.to_text() == b.to_text(),
            (a, b) => a == b,
        }
    }

    fn is_stringish(&self) -> bool {
        matches!(
            self,
            Value::Text(_) | Value::Enum(_) | Value::Email(_) | Value::Phone(_) | Value::Ref(_)
        )
    }

    /// A short description for messages: the value quoted, cut at 60 chars.
    pub fn describe(&self) -> String {
        match self.to_text() {
            None => "empty".to_string(),
            Some(t) => {
                let mut cut: String = t.chars().take(60).collect();
                if cut.len() < t.len() {
                    cut.push('…');
                }
                format!("{cut:?}")
            }
        }
    }

    /// Converts the value to `ty`, losslessly or not at all. `field` names the
    /// field in the error message.
    pub fn convert(&self, ty: &FieldType, field: &str) -> Result<Value, ConvertError> {
        if self.is_empty() {
            return Ok(Value::Null);
        }
        // Described only for an error: most conversions succeed.
        let cannot = |what: &str| {
            mapping(format!(
                "field {field}: cannot convert {} to {what}",
                self.describe()
            ))
        };
        let v = match ty {
            FieldType::Text { max_len } => {
                let t = self.to_text().unwrap_or_default();
                if let Some(max) = max_len {
                    let n = t.chars().count();
                    if n > *max {
                        return Err(validation(format!(
                            "field {field}: value is {n} characters long, the target holds at most {max}"
                        )));
                    }
                }
                if t.contains('\0') {
                    return Err(validation(format!(
                        "field {field}: value contains a NUL character, which the target cannot store"
                    )));
                }
                Value::Text(t)
            }
            FieldType::Integer => match self {
                Value::Int(i) => Value::Int(*i),
                Value::Decimal(d) if d.fract().is_zero() => {
                    Value::Int(i64::try_from(*d).map_err(|_| cannot("integer (out of range)"))?)
                }
                Value::Decimal(_) => return Err(cannot("integer without losing its fraction")),
                Value::Bool(b) => Value::Int(*b as i64),
                v if v.is_stringish() => {
                    let t = v.to_text().unwrap_or_default();
                    Value::Int(t.trim().parse::<i64>().map_err(|_| cannot("integer"))?)
                }
                _ => return Err(cannot("integer")),
            },
            FieldType::Decimal { scale } => {
                let d = match self {
                    Value::Int(i) => Decimal::from(*i),
                    Value::Decimal(d) => *d,
                    v if v.is_stringish() => {
                        let t = v.to_text().unwrap_or_default();
                        Decimal::from_str_exact(t.trim())
                            .or_else(|_| Decimal::from_scientific(t.trim()))
                            .map_err(|_| cannot("decimal"))?
                    }
                    _ => return Err(cannot("decimal")),
                };
                let d = d.normalize();
                if let Some(s) = scale {
                    if d.scale() > *s {
                        return Err(validation(format!(
                            "field {field}: {d} has more than {s} decimal places; the target would round it"
                        )));
                    }
                }
                Value::Decimal(d)
            }
            FieldType::Boolean => match self {
                Value::Bool(b) => Value::Bool(*b),
                Value::Int(0) => Value::Bool(false),
                Value::Int(1) => Value::Bool(true),
                v if v.is_stringish() => {
                    match v
                        .to_text()
                        .unwrap_or_default()
                        .trim()
                        .to_ascii_lowercase()
                        .as_str()
                    {
                        "true" | "yes" | "y" | "1" | "t" | "on" => Value::Bool(true),
                        "false" | "no" | "n" | "0" | "f" | "off" => Value::Bool(false),
                        _ => return Err(cannot("boolean")),
                    }
                }
                _ => return Err(cannot("boolean")),
            },
            FieldType::Date => match self {
                Value::Date(d) => Value::Date(*d),
                Value::DateTime(dt) if dt.time() == chrono::NaiveTime::MIN => {
                    Value::Date(dt.date_naive())
                }
                v if v.is_stringish() => Value::Date(
                    parse_date(&v.to_text().unwrap_or_default()).ok_or_else(|| cannot("date"))?,
                ),
                _ => return Err(cannot("date")),
            },
            FieldType::DateTime => match self {
                Value::DateTime(dt) => Value::DateTime(*dt),
                Value::Date(d) => Value::DateTime(d.and_time(chrono::NaiveTime::MIN).and_utc()),
                v if v.is_stringish() => Value::DateTime(
                    parse_datetime(&v.to_text().unwrap_or_default())
                        .ok_or_else(|| cannot("datetime"))?,
                ),
                _ => return Err(cannot("datetime")),
            },
            FieldType::Enum { options } => {
                let t = match self {
                    v if v.is_stringish() => v.to_text().unwrap_or_default(),
                    Value::Int(_) | Value::Bool(_) | Value::Decimal(_) => {
                        self.to_text().unwrap_or_default()
                    }
                    _ => return Err(cannot("a picklist value")),
                };
                if !options.is_empty() && !options.contains(&t) {
                    return Err(mapping(format!(
                        "field {field}: {} is not one of the target's options ({})",
                        self.describe(),
                        options.join(", ")
                    )));
                }
                Value::Enum(t)
            }
            FieldType::MultiEnum { options } => {
                let set: BTreeSet<String> = match self {
                    Value::MultiEnum(s) => s.clone(),
                    v if v.is_stringish() => v
                        .to_text()
                        .unwrap_or_default()
                        .split(';')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect(),
                    _ => return Err(cannot("a multi-picklist value")),
                };
                if let Some(bad) = set
                    .iter()
                    .find(|o| !options.is_empty() && !options.contains(o))
                {
                    return Err(mapping(format!(
                        "field {field}: {bad:?} is not one of the target's options ({})",
                        options.join(", ")
                    )));
                }
                Value::MultiEnum(set)
            }
            FieldType::Email => {
                let t = self.to_text().unwrap_or_default();
                let trimmed = t.trim();
                if !crate::normalize::is_valid_email(trimmed) {
                    return Err(validation(format!(
                        "field {field}: {} is not a valid e-mail address",
                        self.describe()
                    )));
                }
                Value::Email(trimmed.to_string())
            }
            FieldType::Phone => {
                let t = self.to_text().unwrap_or_default();
                Value::Phone(crate::normalize::phone_e164(&t, None).unwrap_or(t))
            }
            FieldType::Reference => Value::Ref(self.to_text().unwrap_or_default()),
        };
        Ok(v.canonical())
    }
}

/// Parses `YYYY-MM-DD` (and the date part of an ISO datetime at midnight).
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().or_else(|| {
        parse_datetime(s)
            .filter(|dt| dt.time() == chrono::NaiveTime::MIN)
            .map(|dt| dt.date_naive())
    })
}

/// Parses RFC 3339 (offset respected) or a naive `YYYY-MM-DD[ T]HH:MM:SS[.f]`
/// taken as UTC.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(n.and_utc());
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f %z"] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_text() {
            Some(t) => f.write_str(&t),
            None => f.write_str(""),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::text(s)
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::text(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<Decimal> for Value {
    fn from(d: Decimal) -> Value {
        Value::decimal(d)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(o: Option<T>) -> Value {
        o.map(Into::into).unwrap_or(Value::Null)
    }
}

impl FromStr for Value {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Value, Self::Err> {
        Ok(Value::text(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: Value, ty: FieldType, expect: Result<Value, FailureCategory>) {
        let got = v.convert(&ty, "f").map_err(|e| e.category);
        assert_eq!(got, expect, "{v:?} -> {ty:?}");
    }

    #[test]
    fn decimals_compare_exactly() {
        let a = Value::decimal("1500.50".parse().unwrap());
        let b = Value::decimal("1500.5".parse().unwrap());
        assert_eq!(a, b);
        assert!(Value::Int(5).same(&Value::decimal(Decimal::from(5))));
        assert!(!Value::decimal("0.1".parse().unwrap())
            .same(&Value::decimal("0.10000001".parse().unwrap())));
    }

    #[test]
    fn empty_text_is_null() {
        assert_eq!(Value::text(""), Value::Null);
        assert!(Value::Null.same(&Value::Text(String::new())));
    }

    #[test]
    fn conversions_are_lossless_or_fail() {
        check(Value::text("42"), FieldType::Integer, Ok(Value::Int(42)));
        check(
            Value::text("4x"),
            FieldType::Integer,
            Err(FailureCategory::Mapping),
        );
        check(
            Value::decimal("2.5".parse().unwrap()),
            FieldType::Integer,
            Err(FailureCategory::Mapping),
        );
        check(
            Value::text("12.345"),
            FieldType::Decimal { scale: Some(2) },
            Err(FailureCategory::Validation),
        );
        check(
            Value::text("9999999999999999999.123456789"),
            FieldType::Decimal { scale: None },
            Ok(Value::Decimal(
                "9999999999999999999.123456789".parse().unwrap(),
            )),
        );
        // beyond 28 significant digits: refused, never rounded
        check(
            Value::text("99999999999999999999.1234567891"),
            FieldType::Decimal { scale: None },
            Err(FailureCategory::Mapping),
        );
        check(
            Value::text("abcdef"),
            FieldType::Text { max_len: Some(3) },
            Err(FailureCategory::Validation),
        );
        check(
            Value::text("not-an-email"),
            FieldType::Email,
            Err(FailureCategory::Validation),
        );
        check(
            Value::text(" Ann@Example.com "),
            FieldType::Email,
            Ok(Value::Email("Ann@Example.com".into())),
        );
        check(
            Value::text("gold"),
            FieldType::Enum {
                options: vec!["L".into(), "C".into()],
            },
            Err(FailureCategory::Mapping),
        );
        check(
            Value::text("2024-03-31T23:30:00-02:00"),
            FieldType::DateTime,
            Ok(Value::DateTime("2024-04-01T01:30:00Z".parse().unwrap())),
        );
        check(
            Value::text("1969-07-20"),
            FieldType::Date,
            Ok(Value::Date(NaiveDate::from_ymd_opt(1969, 7, 20).unwrap())),
        );
        check(
            Value::text("yes"),
            FieldType::Boolean,
            Ok(Value::Bool(true)),
        );
        check(
            Value::text("a\0b"),
            FieldType::text(),
            Err(FailureCategory::Validation),
        );
    }

    #[test]
    fn serde_round_trip_keeps_decimals_exact() {
        let v = Value::decimal("12345678901234567890.0001".parse().unwrap());
        let s = serde_json::to_string(&v).unwrap();
        assert_eq!(s, r#"{"t":"decimal","v":"12345678901234567890.0001"}"#);
        assert_eq!(serde_json::from_str::<Value>(&s).unwrap(), v);
    }
}
