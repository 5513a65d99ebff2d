use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::Duration;
use puente_core::{
    Capabilities, ChangeDetection, ConnectorError, Cursor, Failure, FailureCategory, FieldSchema,
    Object, ObjectSchema, ObjectSpec, Page, Record, Value, WriteOp, WriteOutcome,
};
use serde_json::json;
use sqlx::{Executor, Row, TypeInfo};

use crate::backend::{Flavor, Pool};
use crate::column::{bind_value, decode_mysql, decode_pg, decode_sqlite, Column, Kind};
use crate::error::{call_error, is_connection_error, row_failure};

/// Runs `$body` with `$p` bound to the concrete pool and `$dec` to its row decoder.
macro_rules! on_pool {
    ($pool:expr, |$p:ident, $dec:ident| $body:expr) => {
        match $pool {
            Pool::Pg($p) => {
                let $dec = decode_pg;
                $body
            }
            Pool::My($p) => {
                let $dec = decode_mysql;
                $body
            }
            Pool::Lite($p) => {
                let $dec = decode_sqlite;
                $body
            }
        }
    };
}

/// Insert statements by the columns they write and their number of rows.
type InsertShapes = HashMap<(Vec<usize>, usize), std::sync::Arc<str>>;

pub struct SqlTable {
    pool: Pool,
    flavor: Flavor,
    returning: bool,
    /// What follows FROM: the quoted table, or the named query as a subquery.
    source: String,
    name: String,
    cols: Vec<Column>,
    pk: usize,
    cursor: Option<usize>,
    overlap: Duration,
    /// A PostgreSQL table: a read records the oldest transaction still open
    /// when it began, so the next read's overlap takes only the rows written
    /// by that transaction or later ones (see [`SqlTable::late_since`]).
    snapshots: bool,
    page_size: usize,
    writable: bool,
    schema: ObjectSchema,
    select_list: String,
    /// Insert statements by (columns, rows): a pass sends the same few
    /// shapes thousands of times, each built once.
    inserts: std::sync::Mutex<InsertShapes>,
}

/// A write checked and converted, ready to bind.
enum Prepared {
    Insert {
        cols: Vec<usize>,
        vals: Vec<Value>,
    },
    Update {
        pk: Value,
        cols: Vec<usize>,
        vals: Vec<Value>,
    },
    Delete {
        pk: Value,
    },
}

fn split_schema(object: &str) -> (Option<String>, String) {
    match object.rsplit_once('.') {
        Some((s, t)) => (Some(s.to_string()), t.to_string()),
        None => (None, object.to_string()),
    }
}

impl SqlTable {
    pub async fn open(
        pool: Pool,
        flavor: Flavor,
        returning: bool,
        spec: &ObjectSpec,
    ) -> Result<SqlTable, ConnectorError> {
        let (cols, source, writable, name) = match &spec.query {
            Some(q) => {
                let source = format!("({q}) AS puente_q");
                let cols =
                    describe_query(&pool, flavor, &format!("SELECT * FROM {source}")).await?;
                (cols, source, false, spec.object.clone())
            }
            None => {
                let cols = discover(&pool, flavor, &spec.object).await?;
                if cols.is_empty() {
                    let tables = list_tables(&pool).await.unwrap_or_default();
                    let meant = puente_core::config::did_you_mean(
                        &spec.object,
                        tables.iter().map(String::as_str),
                    )
                    .map(|m| format!("did you mean {m:?}? "))
                    .unwrap_or_default();
                    let there = if tables.is_empty() {
                        "it holds no tables".to_string()
                    } else {
                        format!("its tables: {}", tables.join(", "))
                    };
                    return Err(ConnectorError::config(format!(
                        "table {} does not exist (or has no columns) in this {} database ({there})",
                        spec.object,
                        flavor.kind()
                    ))
                    .with_hint(format!(
                        "{meant}create the table, or fix the object name in the sync's endpoint"
                    )));
                }
                (cols, flavor.quote(&spec.object), true, spec.object.clone())
            }
        };
        let mut cols = cols;
        let find = |n: &str| cols.iter().position(|c| c.name == n);
        let pk = match &spec.key {
            Some(k) => find(k).ok_or_else(|| {
                ConnectorError::config(format!("{name}: key column {k} does not exist"))
            })?,
            None => {
                let pks: Vec<usize> = cols
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.native.starts_with("pk:"))
                    .map(|(i, _)| i)
                    .collect();
                match pks.as_slice() {
                    [one] => *one,
                    [] => {
                        return Err(ConnectorError::config(format!(
                            "{name} has no primary key; set `key = \"COLUMN\"` on the endpoint to name a unique column"
                        )))
                    }
                    _ => {
                        return Err(ConnectorError::config(format!(
                            "{name} has a composite primary key; set `key = \"COLUMN\"` on the endpoint to name a unique column"
                        )))
                    }
                }
            }
        };
        for c in &mut cols {
            if let Some(n) = c.native.strip_prefix("pk:") {
                c.native = n.to_string();
            }
        }
        let cursor = match &spec.cursor {
            Some(cname) => {
                // SQLite keeps timestamps as text: such a column is a timestamp cursor.
                if flavor == Flavor::Sqlite {
                    if let Some(c) = cols
                        .iter_mut()
                        .find(|c| &c.name == cname && c.kind == Kind::Text)
                    {
                        c.kind = Kind::Timestamp;
                        c.ty = puente_core::FieldType::DateTime;
                    }
                }
                let i = cols.iter().position(|c| &c.name == cname).ok_or_else(|| {
                    ConnectorError::config(format!(
                        "{name}: cursor column {cname} does not exist; columns are {}",
                        cols.iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                if !matches!(
                    cols[i].kind,
                    Kind::Timestamp | Kind::TimestampTz | Kind::Int | Kind::Date
                ) {
                    return Err(ConnectorError::config(format!(
                        "{name}: cursor column {cname} is {}, but a cursor must be a timestamp or an integer that grows with each change",
                        cols[i].native
                    )));
                }
                Some(i)
            }
            None => None,
        };
        let schema = ObjectSchema {
            absent: false,
            name: name.clone(),
            id_field: cols[pk].name.clone(),
            fields: cols
                .iter()
                .enumerate()
                .map(|(i, c)| FieldSchema {
                    name: c.name.clone(),
                    ty: c.ty.clone(),
                    required: !c.nullable && !c.has_default && !c.auto && !c.generated,
                    unique: i == pk,
                    read_only: c.generated || !writable,
                    has_default: c.has_default || c.auto || (i == pk && c.kind == Kind::Text),
                    native_type: c.native.clone(),
                })
                .collect(),
            open: false,
        };
        let select_list = cols
            .iter()
            .map(|c| c.select_expr(flavor))
            .collect::<Vec<_>>()
            .join(", ");
        // Views and named queries have no row versions to compare.
        let snapshots = match (&pool, &spec.query, cursor) {
            (Pool::Pg(p), None, Some(_)) => {
                sqlx::query(&format!("SELECT xmin FROM {source} LIMIT 0"))
                    .execute(p)
                    .await
                    .is_ok()
            }
            _ => false,
        };
        Ok(SqlTable {
            pool,
            flavor,
            returning,
            source,
            name,
            cols,
            pk,
            cursor,
            overlap: Duration::seconds(spec.overlap_secs as i64),
            snapshots,
            page_size: spec.page_size.max(1),
            writable,
            schema,
            select_list,
            inserts: Default::default(),
        })
    }

    /// The cursor column as compared and ordered: SQLite's text timestamps
    /// through julianday(), so differently written times still order.
    fn cursor_expr(&self, ci: usize) -> String {
        let q = self.q(&self.cols[ci].name);
        match (self.flavor, self.cols[ci].kind) {
            (Flavor::Sqlite, Kind::Timestamp | Kind::TimestampTz | Kind::Date) => {
                format!("julianday({q})")
            }
            _ => q,
        }
    }

    /// The `n`th placeholder standing for a cursor value, compared like the column.
    fn cursor_param(&self, ci: usize, n: usize) -> String {
        match (self.flavor, self.cols[ci].kind) {
            (Flavor::Sqlite, Kind::Timestamp | Kind::TimestampTz | Kind::Date) => {
                format!("julianday({})", self.flavor.ph(n))
            }
            _ => self.flavor.ph(n),
        }
    }

    /// One statement updating `rows` rows' `cols` (all the same columns):
    /// per row the key, then the values, bound in that order.
    fn update_many_sql(&self, cols: &[usize], rows: usize) -> String {
        let f = self.flavor;
        let src = &self.source;
        let pkq = self.q(&self.cols[self.pk].name);
        let width = cols.len() + 1;
        let expr = |row: usize, k: usize| {
            let n = row * width + k + 1;
            match k {
                0 => self.cols[self.pk].write_expr(f, n),
                _ => self.cols[cols[k - 1]].write_expr(f, n),
            }
        };
        let names: Vec<String> = (0..width)
            .map(|k| if k == 0 { "k".into() } else { format!("c{k}") })
            .collect();
        // MariaDB's multi-table UPDATE names the table; the others may not.
        let target = if f == Flavor::Mysql { "t." } else { "" };
        let sets = cols
            .iter()
            .enumerate()
            .map(|(k, c)| {
                format!(
                    "{target}{} = v.{}",
                    self.q(&self.cols[*c].name),
                    names[k + 1]
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        match f {
            Flavor::Mysql => {
                let selects = (0..rows)
                    .map(|r| {
                        let list = (0..width)
                            .map(|k| match r {
                                0 => format!("{} AS {}", expr(r, k), names[k]),
                                _ => expr(r, k),
                            })
                            .collect::<Vec<_>>()
                            .join(", ");
                        format!("SELECT {list}")
                    })
                    .collect::<Vec<_>>()
                    .join(" UNION ALL ");
                format!("UPDATE {src} AS t JOIN ({selects}) AS v ON t.{pkq} = v.k SET {sets}")
            }
            Flavor::Postgres | Flavor::Sqlite => {
                let values = (0..rows)
                    .map(|r| {
                        let list = (0..width).map(|k| expr(r, k)).collect::<Vec<_>>();
                        format!("({})", list.join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let names = names.join(", ");
                match f {
                    Flavor::Postgres => format!(
                        "UPDATE {src} AS t SET {sets} FROM (VALUES {values}) AS v ({names}) WHERE t.{pkq} = v.k"
                    ),
                    _ => format!(
                        "WITH v ({names}) AS (VALUES {values}) UPDATE {src} SET {sets} FROM v WHERE {src}.{pkq} = v.k"
                    ),
                }
            }
        }
    }

    /// PostgreSQL: the oldest transaction still open (its id), which every
    /// row a later read may see for the first time was written by or after.
    async fn oldest_open_transaction(&self) -> Result<i64, ConnectorError> {
        let Pool::Pg(p) = &self.pool else {
            return Err(ConnectorError::internal(
                "transaction ids are read from PostgreSQL only",
            ));
        };
        sqlx::query_scalar::<_, i64>("SELECT txid_snapshot_xmin(txid_current_snapshot())")
            .fetch_one(p)
            .await
            .map_err(|e| call_error(&format!("reading {}", self.name), e))
    }

    /// PostgreSQL: a condition true of the rows written by transaction `xmin`
    /// (a 64-bit id) or a later one, and of the rows a read that began while
    /// `xmin` was the oldest open transaction may therefore have missed. Row
    /// versions carry 32-bit ids that wrap around; they are compared
    /// modulo 2^32 as PostgreSQL compares them. A frozen row whose id has
    /// since wrapped may count as late: it is read again, which is harmless.
    fn late_since(&self, xmin: i64) -> String {
        let x = xmin & 0xFFFF_FFFF;
        format!("((xmin::text::bigint - {x} + 4294967296) % 4294967296) < 2147483648")
    }

    fn q(&self, ident: &str) -> String {
        self.flavor.quote(ident)
    }

    fn pk_value(&self, id: &str) -> Value {
        match self.cols[self.pk].kind {
            Kind::Int => id
                .parse::<i64>()
                .map(Value::Int)
                .unwrap_or_else(|_| Value::text(id)),
            _ => Value::text(id),
        }
    }

    fn to_record<R>(
        &self,
        row: &R,
        dec: fn(&R, usize, &Column) -> Result<Value, String>,
    ) -> Record {
        let mut rec = Record::new(String::new());
        for (i, c) in self.cols.iter().enumerate() {
            let v = dec(row, i, c).unwrap_or_else(|msg| {
                rec.unreadable.insert(c.name.clone(), msg);
                Value::Null
            });
            // The id and the modified time as they are read, not looked up
            // again by name.
            if i == self.pk {
                rec.id = v.to_text().unwrap_or_default();
            }
            if let (Some(ci), Value::DateTime(dt)) = (self.cursor, &v) {
                if ci == i {
                    rec.modified_at = Some(*dt);
                }
            }
            rec.fields.insert(c.name.clone(), v);
        }
        rec
    }

    async fn fetch(
        &self,
        sql: &str,
        params: &[(usize, Value)],
    ) -> Result<Vec<Record>, ConnectorError> {
        on_pool!(&self.pool, |p, dec| {
            let mut q = sqlx::query(sql);
            for (ci, v) in params {
                q = bind_value!(q, &self.cols[*ci], v, self.flavor);
            }
            let rows = q
                .fetch_all(p)
                .await
                .map_err(|e| call_error(&format!("reading {}", self.name), e))?;
            Ok(rows.iter().map(|r| self.to_record(r, dec)).collect())
        })
    }

    fn prepare(&self, op: WriteOp) -> Result<Prepared, Failure> {
        let convert =
            |fields: BTreeMap<String, Value>| -> Result<(Vec<usize>, Vec<Value>), Failure> {
                // Room for the key a create may add.
                let mut cols = Vec::with_capacity(fields.len() + 1);
                let mut vals = Vec::with_capacity(fields.len() + 1);
                for (f, v) in fields {
                    let ci = self.cols.iter().position(|c| c.name == f).ok_or_else(|| {
                    Failure::new(FailureCategory::Mapping, format!("table {} has no column {f}", self.name))
                        .with_hint("fix the field name in the sync's mapping (`puente validate` lists the columns)")
                })?;
                    let col = &self.cols[ci];
                    if col.generated {
                        return Err(Failure::new(
                            FailureCategory::Validation,
                            format!(
                                "column {f} of {} is generated and cannot be written",
                                self.name
                            ),
                        )
                        .with_hint("make the mapping one-way towards the other side"));
                    }
                    let v = v
                        .convert(&col.ty, &f)
                        .map_err(|e| Failure::new(e.category, e.message))?;
                    if v.is_empty() && !col.nullable && !(col.has_default || col.auto) {
                        return Err(Failure::new(
                            FailureCategory::Validation,
                            format!("field {f}: {} requires a value (NOT NULL)", self.name),
                        ));
                    }
                    cols.push(ci);
                    vals.push(v);
                }
                Ok((cols, vals))
            };
        Ok(match op {
            WriteOp::Create { fields } => {
                let (mut cols, mut vals) = convert(fields)?;
                if !cols.contains(&self.pk) {
                    let pkc = &self.cols[self.pk];
                    if !(pkc.auto || pkc.has_default) {
                        if pkc.kind == Kind::Text {
                            cols.push(self.pk);
                            vals.push(Value::text(uuid::Uuid::new_v4().to_string()));
                        } else {
                            return Err(Failure::new(
                                FailureCategory::Validation,
                                format!("primary key {} of {} has no default", pkc.name, self.name),
                            )
                            .with_hint("map a field to the key column, or give it a default (identity / auto_increment)"));
                        }
                    }
                }
                Prepared::Insert { cols, vals }
            }
            WriteOp::Update { id, fields } => {
                let (cols, vals) = convert(fields)?;
                Prepared::Update {
                    pk: self.pk_value(&id),
                    cols,
                    vals,
                }
            }
            WriteOp::Delete { id } => Prepared::Delete {
                pk: self.pk_value(&id),
            },
        })
    }

    /// `rec`, a row an insert returned, holds the values `op` inserted.
    fn holds_as_sent(&self, op: &Prepared, rec: &Record) -> bool {
        let Prepared::Insert { cols, vals } = op else {
            return false;
        };
        cols.iter().zip(vals).all(|(c, v)| {
            let held = rec.get(&self.cols[*c].name);
            held == v || held.to_text() == v.to_text()
        })
    }

    /// `INSERT` of `rows` rows of `cols`, returning the rows inserted where
    /// the backend can; built once per shape and kept.
    fn insert_sql(&self, cols: &[usize], rows: usize) -> std::sync::Arc<str> {
        let key = (cols.to_vec(), rows);
        let mut inserts = self.inserts.lock().expect("insert statements");
        if let Some(sql) = inserts.get(&key) {
            return sql.clone();
        }
        let col_list = cols
            .iter()
            .map(|c| self.q(&self.cols[*c].name))
            .collect::<Vec<_>>()
            .join(", ");
        let mut n = 0;
        let groups: Vec<String> = (0..rows)
            .map(|_| {
                let r = cols
                    .iter()
                    .map(|c| {
                        n += 1;
                        self.cols[*c].write_expr(self.flavor, n)
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("({r})")
            })
            .collect();
        let values = if cols.is_empty() {
            "DEFAULT VALUES".to_string()
        } else {
            format!("({col_list}) VALUES {}", groups.join(", "))
        };
        let src = &self.source;
        let sql: std::sync::Arc<str> = if self.returning {
            format!("INSERT INTO {src} {values} RETURNING {}", self.select_list)
        } else {
            format!("INSERT INTO {src} {values}")
        }
        .into();
        if inserts.len() < 64 {
            inserts.insert(key, sql.clone());
        }
        sql
    }

    /// The transactions a batch is written in. A large batch of inserts
    /// only, on a server (not SQLite, which takes one writer at a time),
    /// goes in two halves on two connections at once: the server inserts
    /// one while this process encodes or decodes the other. Inserts of
    /// different rows do not wait on each other; a batch with updates or
    /// deletes keeps one transaction, in its order.
    fn parts<'a, 'p>(&self, ops: &'a [&'p Prepared]) -> Vec<&'a [&'p Prepared]> {
        const SPLIT_FROM: usize = 200;
        let inserts_only = ops.iter().all(|p| matches!(p, Prepared::Insert { .. }));
        if self.flavor == Flavor::Sqlite || !inserts_only || ops.len() < SPLIT_FROM {
            return vec![ops];
        }
        let (first, second) = ops.split_at(ops.len() / 2);
        vec![first, second]
    }

    /// Applies prepared writes in one transaction; any statement error fails it all.
    async fn apply(&self, ops: &[&Prepared]) -> Result<Vec<WriteOutcome>, sqlx::Error> {
        let pkq = self.q(&self.cols[self.pk].name);
        let src = &self.source;
        let flavor = self.flavor;
        on_pool!(&self.pool, |p, dec| {
            let mut tx = p.begin().await?;
            let mut out: Vec<Option<WriteOutcome>> = vec![None; ops.len()];
            let mut readback: Vec<(usize, Value)> = Vec::new();
            // SQLite does not promise RETURNING's order: a multi-row insert's
            // rows are checked against what was sent, and one out of order
            // sends the rest of this call's inserts one row a statement.
            let mut one_by_one = false;
            let mut i = 0;
            while i < ops.len() {
                match ops[i] {
                    Prepared::Insert { cols, .. } => {
                        // A run of inserts with the same columns becomes one statement
                        // where the backend returns the rows it inserted, in order.
                        let multi = self.returning && !one_by_one;
                        let max_rows = if multi {
                            (flavor.max_params() / cols.len().max(1)).clamp(1, 1000)
                        } else {
                            1
                        };
                        let mut j = i;
                        while j < ops.len()
                            && j - i < max_rows
                            && matches!(ops[j], Prepared::Insert { cols: c2, .. } if c2 == cols)
                        {
                            j += 1;
                        }
                        if self.returning {
                            let sql = self.insert_sql(cols, j - i);
                            let check = flavor == Flavor::Sqlite && j - i > 1;
                            if check {
                                sqlx::query("SAVEPOINT puente_insert")
                                    .execute(&mut *tx)
                                    .await?;
                            }
                            let mut q = sqlx::query(&sql);
                            for op in &ops[i..j] {
                                if let Prepared::Insert { cols, vals } = op {
                                    for (c, v) in cols.iter().zip(vals) {
                                        q = bind_value!(q, &self.cols[*c], v, flavor);
                                    }
                                }
                            }
                            let rows = q.fetch_all(&mut *tx).await?;
                            if rows.len() != j - i {
                                return Err(sqlx::Error::Protocol(format!(
                                    "insert returned {} rows for {}",
                                    rows.len(),
                                    j - i
                                )));
                            }
                            let written: Vec<Record> =
                                rows.iter().map(|r| self.to_record(r, dec)).collect();
                            if check {
                                let in_order = ops[i..j]
                                    .iter()
                                    .zip(&written)
                                    .all(|(op, rec)| self.holds_as_sent(op, rec));
                                let end = if in_order {
                                    "RELEASE puente_insert"
                                } else {
                                    "ROLLBACK TO puente_insert"
                                };
                                sqlx::query(end).execute(&mut *tx).await?;
                                if !in_order {
                                    sqlx::query("RELEASE puente_insert")
                                        .execute(&mut *tx)
                                        .await?;
                                    one_by_one = true;
                                    continue;
                                }
                            }
                            for (k, rec) in written.into_iter().enumerate() {
                                out[i + k] = Some(WriteOutcome::Written(rec));
                            }
                        } else {
                            // MySQL without RETURNING: one row, then read it back.
                            let Prepared::Insert { cols, vals } = ops[i] else {
                                unreachable!()
                            };
                            let sql = self.insert_sql(cols, 1);
                            let mut q = sqlx::query(&sql);
                            for (c, v) in cols.iter().zip(vals) {
                                q = bind_value!(q, &self.cols[*c], v, flavor);
                            }
                            let res = q.execute(&mut *tx).await?;
                            let pk = match cols.iter().position(|c| *c == self.pk) {
                                Some(k) => vals[k].clone(),
                                None => Value::Int(res_last_id(&res)),
                            };
                            readback.push((i, pk));
                        }
                        i = j;
                    }
                    Prepared::Update { cols, .. } if !cols.is_empty() && ops.len() - i > 1 => {
                        // A run of updates of the same columns, each row once,
                        // becomes one statement joined to the new values.
                        let max_rows = (flavor.max_params() / (cols.len() + 1)).clamp(1, 1000);
                        let mut pks = std::collections::HashSet::new();
                        let mut j = i;
                        while j < ops.len() && j - i < max_rows {
                            match ops[j] {
                                Prepared::Update { pk, cols: c2, .. }
                                    if c2 == cols && pks.insert(pk.to_text()) =>
                                {
                                    j += 1
                                }
                                _ => break,
                            }
                        }
                        let sql = self.update_many_sql(cols, j - i);
                        let mut q = sqlx::query(&sql);
                        for (k, op) in ops[i..j].iter().enumerate() {
                            if let Prepared::Update { pk, cols, vals } = op {
                                q = bind_value!(q, &self.cols[self.pk], pk, flavor);
                                for (c, v) in cols.iter().zip(vals) {
                                    q = bind_value!(q, &self.cols[*c], v, flavor);
                                }
                                readback.push((i + k, pk.clone()));
                            }
                        }
                        q.execute(&mut *tx).await?;
                        i = j;
                    }
                    Prepared::Update { pk, cols, vals } => {
                        if !cols.is_empty() {
                            let sets = cols
                                .iter()
                                .enumerate()
                                .map(|(k, c)| {
                                    format!(
                                        "{} = {}",
                                        self.q(&self.cols[*c].name),
                                        self.cols[*c].write_expr(flavor, k + 1)
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join(", ");
                            let sql = format!(
                                "UPDATE {src} SET {sets} WHERE {pkq} = {}",
                                flavor.ph(cols.len() + 1)
                            );
                            let mut q = sqlx::query(&sql);
                            for (c, v) in cols.iter().zip(vals) {
                                q = bind_value!(q, &self.cols[*c], v, flavor);
                            }
                            q = bind_value!(q, &self.cols[self.pk], pk, flavor);
                            q.execute(&mut *tx).await?;
                        }
                        readback.push((i, pk.clone()));
                        i += 1;
                    }
                    Prepared::Delete { pk } => {
                        let sql = format!("DELETE FROM {src} WHERE {pkq} = {}", flavor.ph(1));
                        let q = bind_value!(sqlx::query(&sql), &self.cols[self.pk], pk, flavor);
                        q.execute(&mut *tx).await?;
                        out[i] = Some(WriteOutcome::Deleted);
                        i += 1;
                    }
                }
            }
            // Read back what the table now holds for updated (and MySQL-inserted) rows.
            for chunk in readback.chunks(500) {
                let phs = (1..=chunk.len())
                    .map(|n| flavor.ph(n))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "SELECT {} FROM {src} WHERE {pkq} IN ({phs})",
                    self.select_list
                );
                let mut q = sqlx::query(&sql);
                for (_, pk) in chunk {
                    q = bind_value!(q, &self.cols[self.pk], pk, flavor);
                }
                let rows = q.fetch_all(&mut *tx).await?;
                let mut by_id: std::collections::HashMap<String, Record> = rows
                    .iter()
                    .map(|r| {
                        let rec = self.to_record(r, dec);
                        (rec.id.clone(), rec)
                    })
                    .collect();
                for (k, pk) in chunk {
                    let id = pk.to_text().unwrap_or_default();
                    out[*k] = Some(match by_id.remove(&id) {
                        Some(rec) => WriteOutcome::Written(rec),
                        None => WriteOutcome::Failed(
                            Failure::new(
                                FailureCategory::NotFound,
                                format!("row {id} no longer exists in {}", self.name),
                            )
                            .with_hint("it was deleted meanwhile; the next run records the delete"),
                        ),
                    });
                }
            }
            tx.commit().await?;
            Ok(out
                .into_iter()
                .map(|o| o.expect("every write has an outcome"))
                .collect())
        })
    }
}

fn res_last_id<R: ResultLike>(r: &R) -> i64 {
    r.last_id()
}

trait ResultLike {
    fn last_id(&self) -> i64;
}
impl ResultLike for sqlx::mysql::MySqlQueryResult {
    fn last_id(&self) -> i64 {
        self.last_insert_id() as i64
    }
}
impl ResultLike for sqlx::postgres::PgQueryResult {
    fn last_id(&self) -> i64 {
        0
    }
}
impl ResultLike for sqlx::sqlite::SqliteQueryResult {
    fn last_id(&self) -> i64 {
        self.last_insert_rowid()
    }
}

#[async_trait]
impl Object for SqlTable {
    fn schema(&self) -> &ObjectSchema {
        &self.schema
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch: 1000,
            change_detection: if self.cursor.is_some() {
                ChangeDetection::Cursor
            } else {
                ChangeDetection::FullRead
            },
            delete_detection_by_key_diff: true,
            rate_limit_per_sec: None,
            writable: self.writable,
        }
    }

    async fn read(
        &self,
        since: Option<&Cursor>,
        page: Option<String>,
    ) -> Result<Page, ConnectorError> {
        let token: serde_json::Value = match &page {
            Some(t) => {
                serde_json::from_str(t).map_err(|_| ConnectorError::internal("bad page token"))?
            }
            None => json!({}),
        };
        let val =
            |v: &serde_json::Value| -> Option<Value> { serde_json::from_value(v.clone()).ok() };
        // Where the previous read ended: its highest (cursor value, key), and
        // the oldest transaction open when it began.
        let from: Value = since
            .and_then(|c| c.0.get("v"))
            .and_then(val)
            .unwrap_or(Value::Null);
        let from_key: Option<Value> = since.and_then(|c| c.0.get("k")).and_then(val);
        let from_xmin: Option<i64> = since
            .and_then(|c| c.0.get("x"))
            .and_then(serde_json::Value::as_i64);
        // The oldest transaction open as this read began, carried across pages.
        let mut xmin: Option<i64> = token.get("x0").and_then(serde_json::Value::as_i64);
        if self.snapshots && page.is_none() {
            xmin = Some(self.oldest_open_transaction().await?);
        }
        // The highest (cursor value, key) read so far, carried across pages;
        // a read never ends below where it began.
        let mut max_cursor: Option<Value> = token.get("m").and_then(val);
        let mut max_key: Option<Value> = token.get("mk").and_then(val);
        if page.is_none() && !from.is_empty() && from_key.is_some() {
            max_cursor = Some(from.clone());
            max_key = from_key.clone();
        }
        // After a read that noted its oldest open transaction, the overlap
        // window is read first and only for rows written by that transaction
        // or a later one: the rows that read could have missed. Then the rows
        // after the cursor. `w` and `m` name the two phases.
        let two_phases = self.snapshots
            && !self.overlap.is_zero()
            && from_xmin.is_some()
            && !from.is_empty()
            && from_key.is_some();
        let mut phase: Option<&str> = match token.get("p").and_then(serde_json::Value::as_str) {
            Some("w") => Some("w"),
            Some(_) => Some("m"),
            None if page.is_none() && two_phases => Some("w"),
            None => None,
        };
        let mut at: Option<(Value, Value)> =
            match (token.get("c").and_then(val), token.get("k").and_then(val)) {
                (Some(c), Some(k)) => Some((c, k)),
                _ => None,
            };
        let pkq = self.q(&self.cols[self.pk].name);
        let limit = self.page_size;
        let f = self.flavor;
        let query = |phase: Option<&str>,
                     at: Option<(Value, Value)>|
         -> (String, Vec<(usize, Value)>) {
            let Some((ci, true)) = self.cursor.map(|ci| (ci, since.is_some())) else {
                // A full read, in key order.
                return match token.get("k").and_then(val) {
                    Some(k) => (
                        format!(
                            "SELECT {} FROM {} WHERE {pkq} > {} ORDER BY {pkq} LIMIT {limit}",
                            self.select_list,
                            self.source,
                            f.ph(1)
                        ),
                        vec![(self.pk, k)],
                    ),
                    None => (
                        format!(
                            "SELECT {} FROM {} ORDER BY {pkq} LIMIT {limit}",
                            self.select_list, self.source
                        ),
                        vec![],
                    ),
                };
            };
            let cq = self.cursor_expr(ci);
            let lo = match &from {
                Value::DateTime(dt) => Value::DateTime(*dt - self.overlap),
                other => other.clone(),
            };
            // Rows at or after `(c, k)`'s successor, and `more` conditions
            // whose placeholders start at 4.
            let after = |c: Value, k: Value, more: &str, extra: Vec<(usize, Value)>| {
                let mut params = vec![(ci, c.clone()), (ci, c), (self.pk, k)];
                params.extend(extra);
                (
                    format!(
                        "SELECT {} FROM {} WHERE ({cq} > {} OR ({cq} = {} AND {pkq} > {})){more} ORDER BY {cq}, {pkq} LIMIT {limit}",
                        self.select_list,
                        self.source,
                        self.cursor_param(ci, 1),
                        self.cursor_param(ci, 2),
                        f.ph(3)
                    ),
                    params,
                )
            };
            match (phase, at) {
                (Some("w"), at) => {
                    let late = self.late_since(from_xmin.unwrap_or_default());
                    let window = |n: usize| {
                        format!(
                            "{cq} >= {} AND {cq} <= {} AND {late}",
                            self.cursor_param(ci, n),
                            self.cursor_param(ci, n + 1)
                        )
                    };
                    let bounds = vec![(ci, lo), (ci, from.clone())];
                    match at {
                        Some((c, k)) => after(c, k, &format!(" AND {}", window(4)), bounds),
                        None => (
                            format!(
                                "SELECT {} FROM {} WHERE {} ORDER BY {cq}, {pkq} LIMIT {limit}",
                                self.select_list,
                                self.source,
                                window(1)
                            ),
                            bounds,
                        ),
                    }
                }
                (_, Some((c, k))) => after(c, k, "", vec![]),
                (Some(_), None) => after(
                    from.clone(),
                    from_key.clone().unwrap_or(Value::Null),
                    "",
                    vec![],
                ),
                (None, None) => match &from_key {
                    // No overlap: strictly after the last row read.
                    Some(k) if self.overlap.is_zero() && !from.is_empty() => {
                        after(from.clone(), k.clone(), "", vec![])
                    }
                    _ => (
                        format!(
                            "SELECT {} FROM {} WHERE {cq} >= {} ORDER BY {cq}, {pkq} LIMIT {limit}",
                            self.select_list,
                            self.source,
                            self.cursor_param(ci, 1)
                        ),
                        vec![(ci, lo)],
                    ),
                },
            }
        };
        // A full read in key order: the cursor it ends with is the highest
        // cursor value when it began, so a row changed while the read went
        // on (after its page, or before it) is read again next time, even if
        // a row read later carries a newer value.
        let mut start: Option<(Value, Value)> =
            match (token.get("m0").and_then(val), token.get("k0").and_then(val)) {
                (Some(m), Some(k)) => Some((m, k)),
                _ => None,
            };
        if let (Some(ci), None, None) = (self.cursor, since, &page) {
            let cq = self.cursor_expr(ci);
            let newest = self
                .fetch(
                    &format!(
                        "SELECT {} FROM {} WHERE {cq} IS NOT NULL ORDER BY {cq} DESC, {pkq} DESC LIMIT 1",
                        self.select_list, self.source
                    ),
                    &[],
                )
                .await?;
            start = newest
                .first()
                .map(|r| (r.get(&self.cols[ci].name).clone(), self.pk_value(&r.id)));
        }
        // The window's last page, when short, hands over to the rows after
        // the cursor: at once if it found nothing, else on the next page.
        let mut handover = false;
        let records = loop {
            let (sql, params) = query(phase, at.take());
            let records = self.fetch(&sql, &params).await?;
            if phase == Some("w") && records.len() < limit {
                phase = Some("m");
                if records.is_empty() {
                    continue;
                }
                handover = true;
            }
            break records;
        };
        if let Some(ci) = self.cursor {
            let name = &self.cols[ci].name;
            for r in &records {
                let v = r.get(name);
                let order = match (&max_cursor, v) {
                    (_, Value::Null) => None,
                    (None, _) => Some(std::cmp::Ordering::Greater),
                    (Some(Value::DateTime(m)), Value::DateTime(x)) => Some(x.cmp(m)),
                    (Some(Value::Int(m)), Value::Int(x)) => Some(x.cmp(m)),
                    (Some(Value::Date(m)), Value::Date(x)) => Some(x.cmp(m)),
                    _ => None,
                };
                let key = self.pk_value(&r.id);
                let key_bigger = match (&max_key, &key) {
                    (None, _) => true,
                    (Some(Value::Int(m)), Value::Int(k)) => k > m,
                    (Some(m), k) => k.to_text() > m.to_text(),
                };
                match order {
                    Some(std::cmp::Ordering::Greater) => {
                        max_cursor = Some(v.clone());
                        max_key = Some(key);
                    }
                    Some(std::cmp::Ordering::Equal) if key_bigger => max_key = Some(key),
                    _ => {}
                }
            }
        }
        let next = match records.last() {
            Some(r) if records.len() == limit || handover => {
                let mut t = json!({ "m": max_cursor, "mk": max_key });
                if !handover {
                    t["k"] = json!(self.pk_value(&r.id));
                    if let (Some(ci), Some(_)) = (self.cursor, since) {
                        t["c"] = json!(r.get(&self.cols[ci].name));
                    }
                }
                if let Some(p) = phase {
                    t["p"] = json!(p);
                }
                if let Some(x) = xmin {
                    t["x0"] = json!(x);
                }
                if let Some((m0, k0)) = &start {
                    t["m0"] = json!(m0);
                    t["k0"] = json!(k0);
                }
                Some(t.to_string())
            }
            _ => None,
        };
        let mut cursor = if next.is_none() {
            match (max_cursor, since) {
                (Some(_), None) if start.is_some() => {
                    let (m0, k0) = start.expect("checked");
                    Some(Cursor(json!({ "v": m0, "k": k0 })))
                }
                (Some(m), _) => Some(Cursor(json!({ "v": m, "k": max_key }))),
                (None, Some(prev)) => Some(prev.clone()),
                (None, None) => None,
            }
        } else {
            None
        };
        if let (Some(Cursor(c)), Some(x)) = (&mut cursor, xmin) {
            if let Some(o) = c.as_object_mut() {
                o.insert("x".into(), json!(x));
            }
        }
        Ok(Page {
            records,
            next,
            cursor,
        })
    }

    async fn read_by_ids(&self, ids: &[String]) -> Result<Vec<Record>, ConnectorError> {
        let pkq = self.q(&self.cols[self.pk].name);
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let phs = (1..=chunk.len())
                .map(|n| self.flavor.ph(n))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT {} FROM {} WHERE {pkq} IN ({phs})",
                self.select_list, self.source
            );
            let params: Vec<(usize, Value)> = chunk
                .iter()
                .map(|id| (self.pk, self.pk_value(id)))
                .collect();
            out.extend(self.fetch(&sql, &params).await?);
        }
        Ok(out)
    }

    async fn list_ids(&self) -> Result<Vec<String>, ConnectorError> {
        let pkq = self.q(&self.cols[self.pk].name);
        let sql = format!("SELECT {pkq} FROM {}", self.source);
        let col = self.cols[self.pk].clone();
        on_pool!(&self.pool, |p, dec| {
            // Streamed, not held as rows: a large table's ids alone.
            use futures::TryStreamExt;
            let failed = |e| call_error(&format!("listing ids of {}", self.name), e);
            let mut rows = sqlx::query(&sql).fetch(p);
            let mut ids = Vec::new();
            while let Some(r) = rows.try_next().await.map_err(failed)? {
                if let Some(id) = dec(&r, 0, &col).ok().and_then(|v| v.to_text()) {
                    ids.push(id);
                }
            }
            Ok(ids)
        })
    }

    async fn find(&self, conditions: &[(String, Value)]) -> Result<Vec<Record>, ConnectorError> {
        let mut wheres = Vec::new();
        let mut params = Vec::new();
        for (f, v) in conditions {
            let Some(ci) = self.cols.iter().position(|c| &c.name == f) else {
                return Ok(Vec::new());
            };
            let Ok(v) = v.convert(&self.cols[ci].ty, f) else {
                return Ok(Vec::new());
            };
            if v.is_empty() {
                wheres.push(format!("{} IS NULL", self.q(f)));
            } else {
                params.push((ci, v));
                wheres.push(format!(
                    "{} = {}",
                    self.q(f),
                    self.cols[ci].write_expr(self.flavor, params.len())
                ));
            }
        }
        let sql = format!(
            "SELECT {} FROM {} WHERE {} LIMIT 10",
            self.select_list,
            self.source,
            if wheres.is_empty() {
                "1=1".to_string()
            } else {
                wheres.join(" AND ")
            }
        );
        self.fetch(&sql, &params).await
    }

    fn folds_case(&self, field: &str) -> bool {
        self.cols.iter().any(|c| {
            c.name == field
                && matches!(
                    c.ty,
                    puente_core::FieldType::Text { .. } | puente_core::FieldType::Email
                )
        })
    }

    async fn find_any(&self, field: &str, values: &[Value]) -> Result<Vec<Record>, ConnectorError> {
        let Some(ci) = self.cols.iter().position(|c| c.name == field) else {
            return Ok(Vec::new());
        };
        // Text is compared trimmed and without regard to case (folds_case),
        // which PostgreSQL and SQLite do not do by themselves.
        let fold = self.folds_case(field);
        let values: Vec<Value> = values
            .iter()
            .filter_map(|v| match fold {
                true => v.to_text().map(|t| Value::text(t.trim().to_lowercase())),
                false => v.convert(&self.cols[ci].ty, field).ok(),
            })
            .filter(|v| !v.is_empty())
            .collect();
        let column = match fold {
            true => format!("LOWER(TRIM({}))", self.q(field)),
            false => self.q(field),
        };
        let mut out = Vec::new();
        for chunk in values.chunks(500) {
            let phs = (1..=chunk.len())
                .map(|n| self.cols[ci].write_expr(self.flavor, n))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT {} FROM {} WHERE {column} IN ({phs})",
                self.select_list, self.source
            );
            let params: Vec<(usize, Value)> = chunk.iter().map(|v| (ci, v.clone())).collect();
            out.extend(self.fetch(&sql, &params).await?);
        }
        Ok(out)
    }

    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>, ConnectorError> {
        if !self.writable {
            return Err(ConnectorError::config(format!(
                "{} is a named query and cannot be written; make the sync one-way away from it",
                self.name
            )));
        }
        let mut out: Vec<Option<WriteOutcome>> = vec![None; ops.len()];
        let mut prepared: Vec<(usize, Prepared)> = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            match self.prepare(op) {
                Ok(p) => prepared.push((i, p)),
                Err(f) => out[i] = Some(WriteOutcome::Failed(f)),
            }
        }
        let refs: Vec<&Prepared> = prepared.iter().map(|(_, p)| p).collect();
        let parts = self.parts(&refs);
        let results = futures::future::join_all(parts.iter().map(|part| self.apply(part))).await;
        let mut at = 0;
        for (part, result) in parts.iter().zip(results) {
            let items = &prepared[at..at + part.len()];
            at += part.len();
            match result {
                Ok(results) => {
                    for ((i, _), r) in items.iter().zip(results) {
                        out[*i] = Some(r);
                    }
                }
                // The call fails; a part already committed is found by
                // its intents on the next run, as after a crash.
                Err(e) if is_connection_error(&e) => {
                    return Err(call_error(&format!("writing {}", self.name), e))
                }
                Err(_) => {
                    // Isolate the failing rows: each write in its own transaction.
                    for (i, p) in items {
                        out[*i] = Some(match self.apply(&[p]).await {
                            Ok(mut r) => r.remove(0),
                            Err(e) if is_connection_error(&e) => {
                                return Err(call_error(&format!("writing {}", self.name), e))
                            }
                            Err(e) => WriteOutcome::Failed(row_failure(&self.name, &e)),
                        });
                    }
                }
            }
        }
        Ok(out.into_iter().map(|o| o.expect("outcome")).collect())
    }
}

/// The tables (and views) the connection sees, `schema.table` outside the
/// default schema, for naming the one meant.
async fn list_tables(pool: &Pool) -> Result<Vec<String>, sqlx::Error> {
    let mut names: Vec<String> = match pool {
        Pool::Pg(p) => {
            sqlx::query_scalar(
                "SELECT CASE WHEN table_schema = current_schema() THEN table_name::text
                        ELSE table_schema::text || '.' || table_name::text END
                 FROM information_schema.tables
                 WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
            )
            .fetch_all(p)
            .await?
        }
        Pool::My(p) => {
            sqlx::query_scalar(
                "SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE()",
            )
            .fetch_all(p)
            .await?
        }
        Pool::Lite(p) => {
            sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(p)
            .await?
        }
    };
    names.sort();
    Ok(names)
}

async fn discover(
    pool: &Pool,
    flavor: Flavor,
    object: &str,
) -> Result<Vec<Column>, ConnectorError> {
    let (schema, table) = split_schema(object);
    let err = |e| call_error(&format!("discovering {object}"), e);
    Ok(match pool {
        Pool::Pg(p) => {
            let enums: Vec<(String, String)> = sqlx::query_as(
                "SELECT t.typname::text, e.enumlabel::text FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid ORDER BY t.typname, e.enumsortorder",
            )
            .fetch_all(p)
            .await
            .map_err(err)?;
            let rows = sqlx::query(
                "SELECT c.column_name::text AS name, c.data_type::text AS data_type, c.udt_name::text AS udt,
                        (c.is_nullable = 'YES') AS nullable, c.column_default::text AS dflt,
                        (c.is_identity = 'YES') AS ident, c.character_maximum_length::int8 AS maxlen,
                        c.numeric_scale::int8 AS scale, (c.is_generated = 'ALWAYS') AS generated
                 FROM information_schema.columns c
                 WHERE c.table_schema = COALESCE($1, current_schema()) AND c.table_name = $2
                 ORDER BY c.ordinal_position",
            )
            .bind(schema.clone())
            .bind(&table)
            .fetch_all(p)
            .await
            .map_err(err)?;
            let pks: Vec<String> = sqlx::query_scalar(
                "SELECT a.attname::text FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                 WHERE i.indrelid = to_regclass($1)::oid AND i.indisprimary",
            )
            .bind(flavor.quote(object))
            .fetch_all(p)
            .await
            .map_err(err)?;
            let mut cols = Vec::new();
            for r in rows {
                let name: String = r.try_get("name").map_err(err)?;
                let udt: String = r.try_get("udt").map_err(err)?;
                let opts: Vec<String> = enums
                    .iter()
                    .filter(|(t, _)| *t == udt)
                    .map(|(_, l)| l.clone())
                    .collect();
                let mut c = crate::column::pg_column(
                    &name,
                    &r.try_get::<String, _>("data_type").map_err(err)?,
                    &udt,
                    r.try_get("maxlen").map_err(err)?,
                    r.try_get("scale").map_err(err)?,
                    (!opts.is_empty()).then_some(opts),
                );
                let dflt: Option<String> = r.try_get("dflt").map_err(err)?;
                let ident: bool = r.try_get("ident").map_err(err)?;
                c.nullable = r.try_get("nullable").map_err(err)?;
                c.generated = r.try_get("generated").map_err(err)?;
                c.auto = ident || dflt.as_deref().is_some_and(|d| d.starts_with("nextval("));
                c.has_default = dflt.is_some() || ident;
                if pks.contains(&name) {
                    c.native = format!("pk:{}", c.native);
                }
                cols.push(c);
            }
            cols
        }
        Pool::My(p) => {
            let rows = sqlx::query(
                "SELECT CAST(COLUMN_NAME AS CHAR) AS name, CAST(DATA_TYPE AS CHAR) AS data_type,
                        CAST(COLUMN_TYPE AS CHAR) AS column_type, CAST(IS_NULLABLE AS CHAR) AS nullable,
                        CAST(COLUMN_DEFAULT AS CHAR) AS dflt, CAST(EXTRA AS CHAR) AS extra,
                        CAST(CHARACTER_MAXIMUM_LENGTH AS SIGNED) AS maxlen, CAST(NUMERIC_SCALE AS SIGNED) AS scale,
                        CAST(COLUMN_KEY AS CHAR) AS ckey
                 FROM information_schema.COLUMNS
                 WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?
                 ORDER BY ORDINAL_POSITION",
            )
            .bind(schema)
            .bind(&table)
            .fetch_all(p)
            .await
            .map_err(err)?;
            let mut cols = Vec::new();
            for r in rows {
                let name: String = r.try_get("name").map_err(err)?;
                let data_type: String = r.try_get("data_type").map_err(err)?;
                let column_type: String = r.try_get("column_type").map_err(err)?;
                let mut c = crate::column::mysql_column(
                    &name,
                    &data_type,
                    &column_type,
                    r.try_get("maxlen").map_err(err)?,
                    r.try_get("scale").map_err(err)?,
                );
                let extra: String = r
                    .try_get::<Option<String>, _>("extra")
                    .map_err(err)?
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let dflt: Option<String> = r.try_get("dflt").map_err(err)?;
                c.nullable = r.try_get::<String, _>("nullable").map_err(err)? == "YES";
                c.auto = extra.contains("auto_increment");
                c.generated = extra.contains("generated")
                    || extra.contains("virtual")
                    || extra.contains("stored");
                c.has_default = c.auto || dflt.is_some_and(|d| d != "NULL" || c.nullable);
                if r.try_get::<String, _>("ckey").map_err(err)? == "PRI" {
                    c.native = format!("pk:{}", c.native);
                }
                cols.push(c);
            }
            cols
        }
        Pool::Lite(p) => {
            let rows = sqlx::query(
                "SELECT name, type, \"notnull\" AS nn, dflt_value, pk FROM pragma_table_info($1)",
            )
            .bind(&table)
            .fetch_all(p)
            .await
            .map_err(err)?;
            let npk = rows
                .iter()
                .filter(|r| r.try_get::<i64, _>("pk").unwrap_or(0) > 0)
                .count();
            let mut cols = Vec::new();
            for r in rows {
                let name: String = r.try_get("name").map_err(err)?;
                let declared: String = r.try_get("type").map_err(err)?;
                let mut c = crate::column::sqlite_column(&name, &declared);
                let pk = r.try_get::<i64, _>("pk").map_err(err)? > 0;
                c.nullable = r.try_get::<i64, _>("nn").map_err(err)? == 0 && !pk;
                c.has_default = r
                    .try_get::<Option<String>, _>("dflt_value")
                    .map_err(err)?
                    .is_some();
                // INTEGER PRIMARY KEY is the rowid: SQLite assigns it.
                c.auto = pk && npk == 1 && declared.eq_ignore_ascii_case("INTEGER");
                if pk {
                    c.native = format!("pk:{}", c.native);
                }
                cols.push(c);
            }
            cols
        }
    })
}

/// Names and type names of a described statement's result columns.
fn column_types<DB: sqlx::Database>(d: sqlx::Describe<DB>) -> Vec<(String, String)> {
    d.columns
        .iter()
        .map(|c| {
            (
                sqlx::Column::name(c).to_string(),
                sqlx::Column::type_info(c).name().to_string(),
            )
        })
        .collect()
}

async fn describe_query(
    pool: &Pool,
    flavor: Flavor,
    sql: &str,
) -> Result<Vec<Column>, ConnectorError> {
    let err = |e| call_error("describing the named query", e);
    let cols: Vec<(String, String)> = match pool {
        Pool::Pg(p) => column_types(p.describe(sql).await.map_err(err)?),
        Pool::My(p) => column_types(p.describe(sql).await.map_err(err)?),
        Pool::Lite(p) => column_types(p.describe(sql).await.map_err(err)?),
    };
    Ok(cols
        .into_iter()
        .map(|(name, ty)| {
            let t = ty.to_ascii_lowercase();
            match flavor {
                Flavor::Postgres => {
                    let dt = match t.as_str() {
                        "int2" => "smallint",
                        "int4" => "integer",
                        "int8" => "bigint",
                        "numeric" => "numeric",
                        "float4" => "real",
                        "float8" => "double precision",
                        "bool" => "boolean",
                        "date" => "date",
                        "timestamptz" => "timestamp with time zone",
                        "timestamp" => "timestamp without time zone",
                        "text" | "varchar" | "bpchar" | "name" => "text",
                        _ => "USER-DEFINED",
                    };
                    let mut c = crate::column::pg_column(&name, dt, &t, None, None, None);
                    c.pg_cast = None;
                    c
                }
                Flavor::Mysql => {
                    let dt = if t == "boolean" {
                        "tinyint"
                    } else {
                        t.split_whitespace().next().unwrap_or("")
                    };
                    let ct = if t == "boolean" {
                        "tinyint(1)".to_string()
                    } else {
                        t.clone()
                    };
                    crate::column::mysql_column(&name, dt, &ct, None, None)
                }
                Flavor::Sqlite => crate::column::sqlite_column(&name, &ty),
            }
        })
        .collect())
}
