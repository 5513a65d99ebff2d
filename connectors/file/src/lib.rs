//! CSV files as Puente objects: the imports and exports people do every day.
//!
//! A connection is a folder; an object is a file in it. Every value is text
//! (types come from the other side's schema or the mapping's `type`). A file
//! is read whole; writes rewrite it atomically (a temporary file renamed over
//! it), so a crash never leaves half a file.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use puente_core::{
    Capabilities, ChangeDetection, Connector, ConnectorError, Cursor, ErrorKind, FieldSchema,
    FieldType, Object, ObjectSchema, ObjectSpec, Page, Record, Value, WriteOp, WriteOutcome,
};
use tokio::sync::Mutex;

pub mod config;

pub use config::{CsvConfig, KIND};

pub struct CsvConnector {
    dir: PathBuf,
}

impl CsvConnector {
    pub fn new(dir: impl Into<PathBuf>) -> CsvConnector {
        CsvConnector { dir: dir.into() }
    }

    /// A read of a file that does not exist: the files that do, and the one
    /// most likely meant.
    fn no_such_file(&self, object: &str) -> ConnectorError {
        let mut files: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.ends_with(".puente-tmp"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        // CSV files first among the candidates; anything else only if none.
        let csv: Vec<String> = files
            .iter()
            .filter(|f| f.to_ascii_lowercase().ends_with(".csv"))
            .cloned()
            .collect();
        if !csv.is_empty() {
            files = csv;
        }
        let meant = [format!("{object}.csv")]
            .into_iter()
            .find(|f| files.contains(f))
            .or_else(|| {
                puente_core::config::did_you_mean(object, files.iter().map(String::as_str))
                    .map(str::to_string)
            });
        let hint = match (&meant, files.is_empty()) {
            (Some(m), _) => {
                format!("did you mean {m:?}? (an object is a file's whole name, with its ending)")
            }
            (None, true) => {
                "the folder holds no file: put the CSV file there, or fix the connection's dir"
                    .to_string()
            }
            (None, false) => format!("name one of the files there: {}", files.join(", ")),
        };
        let there = if files.is_empty() {
            "no files".to_string()
        } else {
            format!("files: {}", files.join(", "))
        };
        let dir = std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
        ConnectorError::config(format!(
            "no file named {object:?} in {} (it holds {there})",
            dir.display()
        ))
        .with_hint(hint)
    }
}

#[async_trait]
impl Connector for CsvConnector {
    fn kind(&self) -> &'static str {
        "csv"
    }

    async fn check(&self) -> Result<(), ConnectorError> {
        if self.dir.is_dir() {
            Ok(())
        } else {
            Err(
                ConnectorError::config(format!("folder {} does not exist", self.dir.display()))
                    .with_hint("create the folder or fix `dir` in the connection"),
            )
        }
    }

    async fn open(&self, spec: &ObjectSpec) -> Result<Arc<dyn Object>, ConnectorError> {
        let path = self.dir.join(&spec.object);
        let absent = !path.exists();
        if absent && !spec.writes {
            return Err(self.no_such_file(&spec.object));
        }
        if path.is_dir() {
            return Err(ConnectorError::config(format!(
                "{} is a folder, not a CSV file",
                path.display()
            ))
            .with_hint("name a file in the connection's folder, e.g. people.csv"));
        }
        let key = spec.key.clone().unwrap_or_else(|| "id".to_string());
        let delimiter = match spec.options.get("delimiter").map(String::as_str) {
            None | Some(",") => b',',
            Some(";") => b';',
            Some("\\t") | Some("tab") => b'\t',
            Some(other) => {
                return Err(ConnectorError::config(format!(
                    "{}: delimiter {other:?} is not supported; use \",\", \";\" or \"tab\"",
                    spec.object
                )))
            }
        };
        let columns: Vec<String> = spec
            .options
            .get("columns")
            .map(|c| {
                c.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let file = CsvFile {
            path,
            key,
            columns,
            delimiter,
            lock: Mutex::new(()),
            schema: ObjectSchema {
                name: spec.object.clone(),
                id_field: String::new(),
                fields: vec![],
                open: true,
                absent,
            },
        };
        let (headers, _) = file.load().await?;
        let mut file = file;
        file.schema.id_field = file.key.clone();
        file.schema.fields = headers
            .iter()
            .map(|h| {
                let mut f = FieldSchema::new(h, FieldType::text());
                f.has_default = h == &file.key;
                f.unique = h == &file.key;
                f
            })
            .collect();
        if !headers.is_empty() && !headers.contains(&file.key) {
            return Err(ConnectorError::config(format!(
                "{}: no column {:?} to identify rows; columns are {}",
                spec.object,
                file.key,
                headers.join(", ")
            ))
            .with_hint("set `key = \"COLUMN\"` on the endpoint"));
        }
        Ok(Arc::new(file))
    }
}

struct CsvFile {
    path: PathBuf,
    key: String,
    /// The header of a new file, after the key (the mapping's order).
    columns: Vec<String>,
    delimiter: u8,
    lock: Mutex<()>,
    schema: ObjectSchema,
}

/// Rows of a file: header → value.
pub type Rows = Vec<BTreeMap<String, String>>;

impl CsvFile {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// Headers and rows; a missing file is an empty one.
    async fn load(&self) -> Result<(Vec<String>, Rows), ConnectorError> {
        let path = self.path.clone();
        let delimiter = self.delimiter;
        let name = self.name();
        tokio::task::spawn_blocking(move || load_file(&path, delimiter, &name))
            .await
            .map_err(|e| ConnectorError::internal(e.to_string()))?
    }

    fn to_record(&self, row: &BTreeMap<String, String>) -> Record {
        let mut r = Record::new(row.get(&self.key).cloned().unwrap_or_default());
        for (k, v) in row {
            r.fields.insert(k.clone(), Value::text(v.clone()));
        }
        r
    }
}

fn load_file(
    path: &Path,
    delimiter: u8,
    name: &str,
) -> Result<(Vec<String>, Rows), ConnectorError> {
    if !path.exists() {
        return Ok((Vec::new(), Vec::new()));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| ConnectorError::new(ErrorKind::External, format!("{name}: {e}")))?;
    parse(&bytes, delimiter, name)
}

/// Parses a CSV file's bytes: its header and rows (header → value). Broken
/// quotes, ragged rows and bytes that are not UTF-8 are errors naming the
/// line. (Public for the fuzz targets.)
pub fn parse(
    bytes: &[u8],
    delimiter: u8,
    name: &str,
) -> Result<(Vec<String>, Rows), ConnectorError> {
    if let Some(line) = open_quote_line(bytes) {
        return Err(ConnectorError::config(format!(
            "{name}: the quote opened on line {line} is never closed, so every line after it would be read as one value"
        ))
        .with_hint("close the quote (a quote inside a quoted value is written twice: \"\")"));
    }
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .from_reader(bytes);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| csv_error(name, e))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_string())
        .collect();
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| csv_error(name, e))?;
        rows.push(
            headers
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_string))
                .collect(),
        );
    }
    Ok((headers, rows))
}

/// The line of a quote still open at the end of the file, if any.
fn open_quote_line(bytes: &[u8]) -> Option<usize> {
    let mut line = 1;
    let mut open_at = None;
    for &b in bytes {
        match b {
            b'"' => open_at = if open_at.is_some() { None } else { Some(line) },
            b'\n' => line += 1,
            _ => {}
        }
    }
    open_at
}

fn csv_error(name: &str, e: csv::Error) -> ConnectorError {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    let what = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("line {line} has {len} fields, the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => format!("line {line} is not valid UTF-8"),
        _ => format!("line {line}: {e}"),
    };
    ConnectorError::config(format!("{name}: {what}"))
        .with_hint("fix the file (a quote left open swallows the lines after it) and run again")
}

#[async_trait]
impl Object for CsvFile {
    fn schema(&self) -> &ObjectSchema {
        &self.schema
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch: 10_000,
            change_detection: ChangeDetection::FullRead,
            delete_detection_by_key_diff: true,
            rate_limit_per_sec: None,
            writable: true,
        }
    }

    async fn read(
        &self,
        _since: Option<&Cursor>,
        _page: Option<String>,
    ) -> Result<Page, ConnectorError> {
        let (_, rows) = self.load().await?;
        let mut seen = HashSet::new();
        let mut records = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let id = row.get(&self.key).cloned().unwrap_or_default();
            if id.is_empty() || !seen.insert(id.clone()) {
                return Err(ConnectorError::config(format!(
                    "{}: row {} has {} key {:?}",
                    self.name(),
                    i + 2,
                    if id.is_empty() {
                        "an empty"
                    } else {
                        "a duplicate"
                    },
                    id
                ))
                .with_hint(format!("every row needs a unique {} value", self.key)));
            }
            records.push(self.to_record(row));
        }
        Ok(Page {
            records,
            next: None,
            cursor: None,
        })
    }

    async fn read_by_ids(&self, ids: &[String]) -> Result<Vec<Record>, ConnectorError> {
        let want: HashSet<&String> = ids.iter().collect();
        let (_, rows) = self.load().await?;
        Ok(rows
            .iter()
            .filter(|r| r.get(&self.key).is_some_and(|id| want.contains(id)))
            .map(|r| self.to_record(r))
            .collect())
    }

    async fn list_ids(&self) -> Result<Vec<String>, ConnectorError> {
        let (_, rows) = self.load().await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get(&self.key).cloned())
            .collect())
    }

    async fn find(&self, conditions: &[(String, Value)]) -> Result<Vec<Record>, ConnectorError> {
        let (_, rows) = self.load().await?;
        Ok(rows
            .iter()
            .filter(|r| {
                conditions.iter().all(|(f, v)| {
                    let cell = Value::text(r.get(f).cloned().unwrap_or_default());
                    cell.same(v)
                })
            })
            .map(|r| self.to_record(r))
            .collect())
    }

    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let _guard = self.lock.lock().await;
        let (mut headers, mut rows) = self.load().await?;
        if headers.is_empty() {
            headers.push(self.key.clone());
            headers.extend(self.columns.iter().filter(|c| **c != self.key).cloned());
        }
        let mut out = Vec::with_capacity(ops.len());
        let index = |rows: &Rows, id: &str| {
            rows.iter()
                .position(|r| r.get(&self.key).map(String::as_str) == Some(id))
        };
        for op in ops {
            match op {
                WriteOp::Create { fields } => {
                    let mut row: BTreeMap<String, String> = fields
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_text().unwrap_or_default()))
                        .collect();
                    let id = row
                        .get(&self.key)
                        .filter(|s| !s.is_empty())
                        .cloned()
                        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                    if index(&rows, &id).is_some() {
                        out.push(WriteOutcome::Failed(puente_core::Failure::new(
                            puente_core::FailureCategory::Duplicate,
                            format!("{}: a row with {} {id:?} exists", self.name(), self.key),
                        )));
                        continue;
                    }
                    row.insert(self.key.clone(), id);
                    for k in row.keys() {
                        if !headers.contains(k) {
                            headers.push(k.clone());
                        }
                    }
                    out.push(WriteOutcome::Written(self.to_record(&row)));
                    rows.push(row);
                }
                WriteOp::Update { id, fields } => match index(&rows, &id) {
                    Some(i) => {
                        for (k, v) in fields {
                            if !headers.contains(&k) {
                                headers.push(k.clone());
                            }
                            rows[i].insert(k, v.to_text().unwrap_or_default());
                        }
                        out.push(WriteOutcome::Written(self.to_record(&rows[i])));
                    }
                    None => out.push(WriteOutcome::Failed(puente_core::Failure::new(
                        puente_core::FailureCategory::NotFound,
                        format!("{}: no row with {} {id:?}", self.name(), self.key),
                    ))),
                },
                WriteOp::Delete { id } => {
                    if let Some(i) = index(&rows, &id) {
                        rows.remove(i);
                    }
                    out.push(WriteOutcome::Deleted);
                }
            }
        }
        let path = self.path.clone();
        let delimiter = self.delimiter;
        tokio::task::spawn_blocking(move || save_file(&path, delimiter, &headers, &rows))
            .await
            .map_err(|e| ConnectorError::internal(e.to_string()))?
            .map_err(|e| {
                ConnectorError::new(ErrorKind::External, format!("writing {}: {e}", self.name()))
            })?;
        Ok(out)
    }
}

fn save_file(path: &Path, delimiter: u8, headers: &[String], rows: &Rows) -> std::io::Result<()> {
    let tmp = path.with_extension("csv.puente-tmp");
    {
        let mut w = csv::WriterBuilder::new()
            .delimiter(delimiter)
            .from_path(&tmp)?;
        w.write_record(headers)?;
        for r in rows {
            w.write_record(
                headers
                    .iter()
                    .map(|h| r.get(h).map(String::as_str).unwrap_or("")),
            )?;
        }
        w.flush()?;
        w.into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(object: &str) -> ObjectSpec {
        ObjectSpec {
            object: object.into(),
            page_size: 100,
            ..ObjectSpec::default()
        }
    }

    #[tokio::test]
    async fn reads_writes_and_reports_broken_quotes_with_the_line() {
        let dir = std::env::temp_dir().join(format!("puente-csv-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("people.csv"),
            "id,email,name\n1,ann@x.com,\"Ann, Lee\"\n2,bob@x.com,Bob\n",
        )
        .unwrap();
        let c = CsvConnector::new(&dir);
        let o = c.open(&spec("people.csv")).await.unwrap();
        let p = o.read(None, None).await.unwrap();
        assert_eq!(p.records.len(), 2);
        assert_eq!(p.records[0].get("name"), &Value::text("Ann, Lee"));
        let out = o
            .write(vec![
                WriteOp::Update {
                    id: "2".into(),
                    fields: [("name".to_string(), Value::text("Robert"))].into(),
                },
                WriteOp::Create {
                    fields: [("email".to_string(), Value::text("cy@x.com"))].into(),
                },
                WriteOp::Delete { id: "1".into() },
            ])
            .await
            .unwrap();
        assert!(
            matches!(&out[0], WriteOutcome::Written(r) if r.get("name") == &Value::text("Robert"))
        );
        assert!(matches!(&out[1], WriteOutcome::Written(r) if r.id.len() == 36));
        assert_eq!(o.list_ids().await.unwrap().len(), 2);

        std::fs::write(dir.join("broken.csv"), "id,name\n1,\"Ann\n2,Bob\n").unwrap();
        let err = match c.open(&spec("broken.csv")).await {
            Ok(o) => o.read(None, None).await.unwrap_err(),
            Err(e) => e,
        };
        assert!(err.message.contains("broken.csv"), "{}", err.message);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
