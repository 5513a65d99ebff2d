//! Columns: discovery, and the typed conversion of values to and from each
//! backend's wire types.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use puente_core::{parse_date, parse_datetime, FieldType, Value};
use rust_decimal::Decimal;
use sqlx::{Row, TypeInfo, ValueRef};

use crate::backend::Flavor;

/// How a column's values travel on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    /// Exact decimals, read as text so no digit is lost.
    Decimal,
    Float,
    Text,
    Bool,
    Date,
    /// A timestamp without time zone, taken as UTC.
    Timestamp,
    TimestampTz,
    /// MySQL SET: comma-separated on the wire.
    Set,
}

#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
    pub ty: FieldType,
    pub native: String,
    pub nullable: bool,
    pub has_default: bool,
    pub auto: bool,
    pub generated: bool,
    /// PostgreSQL: the type to cast a text parameter to on writes (enums, uuid, json).
    pub pg_cast: Option<String>,
    /// Read through a text cast (PostgreSQL/MySQL types without a Rust decoder).
    pub read_as_text: bool,
}

impl Column {
    pub fn new(name: &str, kind: Kind, ty: FieldType, native: &str) -> Column {
        Column {
            name: name.to_string(),
            kind,
            ty,
            native: native.to_string(),
            nullable: true,
            has_default: false,
            auto: false,
            generated: false,
            pg_cast: None,
            read_as_text: false,
        }
    }

    /// The select-list expression for this column.
    pub fn select_expr(&self, flavor: Flavor) -> String {
        let q = flavor.quote(&self.name);
        if !self.read_as_text && self.kind != Kind::Decimal {
            return q;
        }
        match flavor {
            Flavor::Postgres => format!("{q}::text AS {q}"),
            Flavor::Mysql => format!("CAST({q} AS CHAR) AS {q}"),
            Flavor::Sqlite => q,
        }
    }

    /// The placeholder expression for writing this column.
    pub fn write_expr(&self, flavor: Flavor, n: usize) -> String {
        match (&self.pg_cast, flavor) {
            (Some(t), Flavor::Postgres) => format!("${n}::{t}"),
            _ => flavor.ph(n),
        }
    }
}

/// Maps a PostgreSQL column (information_schema data_type / udt_name).
pub fn pg_column(
    name: &str,
    data_type: &str,
    udt: &str,
    max_len: Option<i64>,
    scale: Option<i64>,
    enum_options: Option<Vec<String>>,
) -> Column {
    let text = FieldType::Text {
        max_len: max_len.map(|m| m as usize),
    };
    let mut c = match data_type {
        "smallint" | "integer" | "bigint" => Column::new(name, Kind::Int, FieldType::Integer, udt),
        "numeric" => {
            let mut c = Column::new(
                name,
                Kind::Decimal,
                FieldType::Decimal {
                    scale: scale.map(|s| s as u32),
                },
                udt,
            );
            // Exact decimals travel as text.
            c.pg_cast = Some("numeric".into());
            c
        }
        "real" | "double precision" => {
            Column::new(name, Kind::Float, FieldType::Decimal { scale: None }, udt)
        }
        "boolean" => Column::new(name, Kind::Bool, FieldType::Boolean, udt),
        "date" => Column::new(name, Kind::Date, FieldType::Date, udt),
        "timestamp with time zone" => {
            Column::new(name, Kind::TimestampTz, FieldType::DateTime, udt)
        }
        "timestamp without time zone" => {
            Column::new(name, Kind::Timestamp, FieldType::DateTime, udt)
        }
        "character varying" | "character" | "text" | "name" | "citext" => {
            Column::new(name, Kind::Text, text, udt)
        }
        _ => {
            let ty = match enum_options {
                Some(options) => FieldType::Enum { options },
                None => FieldType::text(),
            };
            let mut c = Column::new(name, Kind::Text, ty, udt);
            c.read_as_text = true;
            c.pg_cast = Some(format!("\"{}\"", udt.replace('"', "\"\"")));
            c
        }
    };
    if udt == "citext" {
        c.read_as_text = true;
        c.pg_cast = Some("citext".into());
    }
    c
}

/// Maps a MySQL/MariaDB column (DATA_TYPE, COLUMN_TYPE).
pub fn mysql_column(
    name: &str,
    data_type: &str,
    column_type: &str,
    max_len: Option<i64>,
    scale: Option<i64>,
) -> Column {
    let ct = column_type.to_ascii_lowercase();
    match data_type.to_ascii_lowercase().as_str() {
        "tinyint" if ct.starts_with("tinyint(1)") => {
            Column::new(name, Kind::Bool, FieldType::Boolean, &ct)
        }
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
            Column::new(name, Kind::Int, FieldType::Integer, &ct)
        }
        "decimal" | "numeric" => Column::new(
            name,
            Kind::Decimal,
            FieldType::Decimal {
                scale: scale.map(|s| s as u32),
            },
            &ct,
        ),
        "float" | "double" | "real" => {
            Column::new(name, Kind::Float, FieldType::Decimal { scale: None }, &ct)
        }
        "date" => Column::new(name, Kind::Date, FieldType::Date, &ct),
        "datetime" => Column::new(name, Kind::Timestamp, FieldType::DateTime, &ct),
        "timestamp" => Column::new(name, Kind::TimestampTz, FieldType::DateTime, &ct),
        "enum" => {
            let mut c = Column::new(
                name,
                Kind::Text,
                FieldType::Enum {
                    options: parse_options(column_type),
                },
                &ct,
            );
            c.read_as_text = true;
            c
        }
        "set" => {
            let mut c = Column::new(
                name,
                Kind::Set,
                FieldType::MultiEnum {
                    options: parse_options(column_type),
                },
                &ct,
            );
            c.read_as_text = true;
            c
        }
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => Column::new(
            name,
            Kind::Text,
            FieldType::Text {
                max_len: max_len.map(|m| m as usize),
            },
            &ct,
        ),
        _ => {
            let mut c = Column::new(name, Kind::Text, FieldType::text(), &ct);
            c.read_as_text = true;
            c
        }
    }
}

/// `enum('a','b''c')` → ["a", "b'c"].
fn parse_options(column_type: &str) -> Vec<String> {
    let Some(inner) = column_type
        .find('(')
        .and_then(|s| column_type.rfind(')').map(|e| &column_type[s + 1..e]))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = inner.chars().peekable();
    let mut in_quote = false;
    while let Some(ch) = chars.next() {
        match (ch, in_quote) {
            ('\'', false) => in_quote = true,
            ('\'', true) if chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            ('\'', true) => {
                in_quote = false;
                out.push(std::mem::take(&mut cur));
            }
            (c, true) => cur.push(c),
            _ => {}
        }
    }
    out
}

/// Maps an SQLite declared type by its affinity rules.
pub fn sqlite_column(name: &str, declared: &str) -> Column {
    let d = declared.to_ascii_uppercase();
    let (kind, ty) = if d.contains("BOOL") {
        (Kind::Bool, FieldType::Boolean)
    } else if d.contains("INT") {
        (Kind::Int, FieldType::Integer)
    } else if d.contains("DATETIME") || d.contains("TIMESTAMP") {
        (Kind::Timestamp, FieldType::DateTime)
    } else if d.contains("DATE") {
        (Kind::Date, FieldType::Date)
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") || d.is_empty() {
        (Kind::Text, FieldType::text())
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        (Kind::Float, FieldType::Decimal { scale: None })
    } else if d.contains("NUM") || d.contains("DEC") {
        (Kind::Decimal, FieldType::Decimal { scale: None })
    } else {
        (Kind::Text, FieldType::text())
    };
    Column::new(name, kind, ty, declared)
}

fn float_value(f: f64) -> Value {
    if f.is_finite() {
        Decimal::from_str_exact(&f.to_string())
            .or_else(|_| Decimal::from_scientific(&format!("{f:e}")))
            .map(Value::decimal)
            .unwrap_or_else(|_| Value::text(f.to_string()))
    } else {
        Value::text(f.to_string())
    }
}

/// Interprets text a column holds by the column's type; text that does not
/// parse stays text (so the conversion at the target names the problem).
fn from_text(col: &Column, s: String) -> Value {
    match col.kind {
        Kind::Decimal | Kind::Float => Decimal::from_str_exact(s.trim())
            .map(Value::decimal)
            .unwrap_or_else(|_| Value::text(s)),
        Kind::Int => s
            .trim()
            .parse::<i64>()
            .map(Value::Int)
            .unwrap_or_else(|_| Value::text(s)),
        Kind::Date => parse_date(&s)
            .map(Value::Date)
            .unwrap_or_else(|| Value::text(s)),
        Kind::Timestamp | Kind::TimestampTz => parse_datetime(&s)
            .map(Value::DateTime)
            .unwrap_or_else(|| Value::text(s)),
        Kind::Bool => match s.as_str() {
            "1" | "t" | "true" => Value::Bool(true),
            "0" | "f" | "false" => Value::Bool(false),
            _ => Value::text(s),
        },
        Kind::Set => Value::MultiEnum(
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect(),
        )
        .canonical(),
        Kind::Text => match &col.ty {
            FieldType::Enum { .. } => Value::Enum(s).canonical(),
            _ => Value::text(s),
        },
    }
}

type DecodeResult = Result<Value, String>;

fn decode_err(col: &Column, e: sqlx::Error) -> String {
    format!("column {}: cannot read its value: {e}", col.name)
}

pub fn decode_pg(row: &sqlx::postgres::PgRow, i: usize, col: &Column) -> DecodeResult {
    let e = |x| decode_err(col, x);
    if row.try_get_raw(i).map_err(e)?.is_null() {
        return Ok(Value::Null);
    }
    if col.read_as_text || col.kind == Kind::Decimal {
        return Ok(from_text(col, row.try_get::<String, _>(i).map_err(e)?));
    }
    Ok(match col.kind {
        Kind::Int => Value::Int(match col.native.as_str() {
            "int2" => row.try_get::<i16, _>(i).map_err(e)? as i64,
            "int4" => row.try_get::<i32, _>(i).map_err(e)? as i64,
            _ => row.try_get::<i64, _>(i).map_err(e)?,
        }),
        Kind::Float => float_value(match col.native.as_str() {
            "float4" => row.try_get::<f32, _>(i).map_err(e)? as f64,
            _ => row.try_get::<f64, _>(i).map_err(e)?,
        }),
        Kind::Bool => Value::Bool(row.try_get(i).map_err(e)?),
        Kind::Date => Value::Date(row.try_get(i).map_err(e)?),
        Kind::Timestamp => {
            Value::DateTime(row.try_get::<NaiveDateTime, _>(i).map_err(e)?.and_utc())
        }
        Kind::TimestampTz => Value::DateTime(row.try_get::<DateTime<Utc>, _>(i).map_err(e)?),
        _ => from_text(col, row.try_get::<String, _>(i).map_err(e)?),
    })
}

pub fn decode_mysql(row: &sqlx::mysql::MySqlRow, i: usize, col: &Column) -> DecodeResult {
    let e = |x| decode_err(col, x);
    if row.try_get_raw(i).map_err(e)?.is_null() {
        return Ok(Value::Null);
    }
    if col.read_as_text || col.kind == Kind::Decimal {
        return Ok(from_text(col, row.try_get::<String, _>(i).map_err(e)?));
    }
    Ok(match col.kind {
        Kind::Int => match row.try_get::<i64, _>(i) {
            Ok(v) => Value::Int(v),
            Err(_) => {
                let u = row.try_get::<u64, _>(i).map_err(e)?;
                i64::try_from(u)
                    .map(Value::Int)
                    .unwrap_or_else(|_| Value::decimal(Decimal::from(u)))
            }
        },
        Kind::Float => float_value(match row.try_get::<f64, _>(i) {
            Ok(v) => v,
            Err(_) => row.try_get::<f32, _>(i).map_err(e)? as f64,
        }),
        Kind::Bool => Value::Bool(row.try_get(i).map_err(e)?),
        Kind::Date => Value::Date(row.try_get(i).map_err(e)?),
        Kind::Timestamp => {
            Value::DateTime(row.try_get::<NaiveDateTime, _>(i).map_err(e)?.and_utc())
        }
        Kind::TimestampTz => Value::DateTime(row.try_get::<DateTime<Utc>, _>(i).map_err(e)?),
        _ => {
            // Text: bytes that are not UTF-8 are reported, not altered.
            let bytes = row.try_get::<Vec<u8>, _>(i).map_err(e)?;
            match String::from_utf8(bytes) {
                Ok(s) => from_text(col, s),
                Err(_) => {
                    return Err(format!(
                        "column {}: holds bytes that are not valid UTF-8",
                        col.name
                    ))
                }
            }
        }
    })
}

pub fn decode_sqlite(row: &sqlx::sqlite::SqliteRow, i: usize, col: &Column) -> DecodeResult {
    let e = |x| decode_err(col, x);
    let raw = row.try_get_raw(i).map_err(e)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let storage = raw.type_info().name().to_string();
    Ok(match storage.as_str() {
        "INTEGER" => {
            let v = row.try_get_unchecked::<i64, _>(i).map_err(e)?;
            match col.kind {
                Kind::Bool => Value::Bool(v != 0),
                Kind::Decimal | Kind::Float => Value::decimal(Decimal::from(v)),
                Kind::Timestamp | Kind::TimestampTz => DateTime::from_timestamp(v, 0)
                    .map(Value::DateTime)
                    .unwrap_or(Value::Int(v)),
                _ => Value::Int(v),
            }
        }
        "REAL" => float_value(row.try_get_unchecked::<f64, _>(i).map_err(e)?),
        "BLOB" => {
            let bytes = row.try_get_unchecked::<Vec<u8>, _>(i).map_err(e)?;
            match String::from_utf8(bytes) {
                Ok(s) => from_text(col, s),
                Err(_) => {
                    return Err(format!(
                        "column {}: holds bytes that are not valid UTF-8",
                        col.name
                    ))
                }
            }
        }
        _ => from_text(col, row.try_get_unchecked::<String, _>(i).map_err(e)?),
    })
}

/// The SQLite text form of a datetime: what `CURRENT_TIMESTAMP` writes, plus
/// fractional seconds when there are any, so text comparisons keep order.
pub fn sqlite_datetime(dt: &DateTime<Utc>) -> String {
    dt.format("%Y-%m-%d %H:%M:%S%.f").to_string()
}

pub fn date_text(d: &NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

macro_rules! bind_value {
    ($q:expr, $col:expr, $v:expr, $flavor:expr) => {{
        let q = $q;
        let v: &::puente_core::Value = $v;
        let col: &$crate::column::Column = $col;
        match col.kind {
            $crate::column::Kind::Int => q.bind(match v {
                ::puente_core::Value::Int(i) => Some(*i),
                ::puente_core::Value::Bool(b) => Some(*b as i64),
                _ => v.to_text().and_then(|t| t.parse::<i64>().ok()),
            }),
            $crate::column::Kind::Decimal => q.bind(v.to_text()),
            $crate::column::Kind::Float => q.bind(v.to_text().and_then(|t| t.parse::<f64>().ok())),
            $crate::column::Kind::Bool => q.bind(match v {
                ::puente_core::Value::Bool(b) => Some(*b),
                ::puente_core::Value::Null => None,
                _ => v.to_text().map(|t| t == "true" || t == "1"),
            }),
            $crate::column::Kind::Date if $flavor != $crate::backend::Flavor::Sqlite => {
                q.bind(match v {
                    ::puente_core::Value::Date(d) => Some(*d),
                    _ => v.to_text().and_then(|t| ::puente_core::parse_date(&t)),
                })
            }
            $crate::column::Kind::Timestamp if $flavor != $crate::backend::Flavor::Sqlite => q
                .bind(match v {
                    ::puente_core::Value::DateTime(dt) => Some(dt.naive_utc()),
                    _ => v
                        .to_text()
                        .and_then(|t| ::puente_core::parse_datetime(&t))
                        .map(|d| d.naive_utc()),
                }),
            $crate::column::Kind::TimestampTz if $flavor != $crate::backend::Flavor::Sqlite => q
                .bind(match v {
                    ::puente_core::Value::DateTime(dt) => Some(*dt),
                    _ => v.to_text().and_then(|t| ::puente_core::parse_datetime(&t)),
                }),
            $crate::column::Kind::Timestamp | $crate::column::Kind::TimestampTz => {
                q.bind(match v {
                    ::puente_core::Value::DateTime(dt) => Some(crate::column::sqlite_datetime(dt)),
                    _ => v.to_text(),
                })
            }
            $crate::column::Kind::Date => q.bind(match v {
                ::puente_core::Value::Date(d) => Some(crate::column::date_text(d)),
                _ => v.to_text(),
            }),
            $crate::column::Kind::Set => q.bind(match v {
                ::puente_core::Value::MultiEnum(s) => {
                    Some(s.iter().cloned().collect::<Vec<_>>().join(","))
                }
                _ => v.to_text(),
            }),
            // Text is bound where it is, not copied.
            _ => match v.text_ref() {
                Some(t) => q.bind(Some(t)),
                None => q.bind(v.to_text()),
            },
        }
    }};
}
pub(crate) use bind_value;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_enum_options_parse_with_quotes() {
        assert_eq!(
            parse_options("enum('L','C','it''s')"),
            vec!["L", "C", "it's"]
        );
        assert_eq!(parse_options("set('a','b')"), vec!["a", "b"]);
    }
}
