//! The connector contract suite on a CSV file keyed by `code`, edited out
//! of band as a person or another program would: the file rewritten.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use puente_core::{Connector, FailureCategory, Fields, ObjectSpec, Value};
use puente_file::CsvConnector;
use puente_testkit::contract::{self, Applies, BadCredentials, Fault, Harness, Invalid, Valid};

const HEADER: [&str; 3] = ["code", "email", "label"];

struct Csv {
    dir: tempfile::TempDir,
    /// Each reset makes a new file: `people_1.csv`, `people_2.csv`, …
    file: Mutex<String>,
    resets: AtomicUsize,
    /// Records created out of band since the reset (codes `k0`, `k1`, …).
    created: AtomicUsize,
}

impl Csv {
    fn new() -> Csv {
        Csv {
            dir: tempfile::tempdir().unwrap(),
            file: Mutex::new(String::new()),
            resets: AtomicUsize::new(0),
            created: AtomicUsize::new(0),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join(&*self.file.lock().unwrap())
    }

    /// Rewrites the file with `edit` applied to its rows (code, email, label).
    fn edit(&self, edit: impl FnOnce(&mut Vec<[String; 3]>)) {
        let path = self.path();
        let mut rows = rows(&path);
        edit(&mut rows);
        let mut w = csv::Writer::from_path(&path).unwrap();
        w.write_record(HEADER).unwrap();
        for r in &rows {
            w.write_record(r).unwrap();
        }
        w.flush().unwrap();
    }
}

fn rows(path: &Path) -> Vec<[String; 3]> {
    let bytes = std::fs::read(path).unwrap();
    let (_, rows) = puente_file::parse(&bytes, b',', "contract").unwrap();
    rows.into_iter()
        .map(|r| HEADER.map(|h| r.get(h).cloned().unwrap_or_default()))
        .collect()
}

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::text(*v)))
        .collect()
}

#[async_trait]
impl Harness for Csv {
    fn name(&self) -> String {
        "csv (a file keyed by code)".into()
    }

    async fn reset(&self) {
        let n = self.resets.fetch_add(1, Ordering::Relaxed) + 1;
        *self.file.lock().unwrap() = format!("people_{n}.csv");
        std::fs::write(self.path(), "code,email,label\n").unwrap();
        self.created.store(0, Ordering::Relaxed);
    }

    async fn connect(&self) -> Arc<dyn Connector> {
        Arc::new(CsvConnector::new(self.dir.path()))
    }

    fn spec(&self, page_size: usize) -> ObjectSpec {
        ObjectSpec {
            object: self.file.lock().unwrap().clone(),
            key: Some("code".into()),
            page_size,
            ..ObjectSpec::default()
        }
    }

    fn label_field(&self) -> &str {
        "label"
    }

    async fn create(&self, labels: &[String]) -> Vec<String> {
        let from = self.created.fetch_add(labels.len(), Ordering::Relaxed);
        let new: Vec<[String; 3]> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let n = from + i;
                [format!("k{n}"), format!("oob{n}@example.com"), l.clone()]
            })
            .collect();
        let ids = new.iter().map(|r| r[0].clone()).collect();
        self.edit(|rows| rows.extend(new));
        ids
    }

    async fn change(&self, id: &str, label: &str) {
        self.edit(|rows| {
            let row = rows.iter_mut().find(|r| r[0] == id).expect("the row");
            row[2] = label.to_string();
        });
    }

    async fn delete(&self, id: &str) -> Applies<()> {
        self.edit(|rows| rows.retain(|r| r[0] != id));
        Applies::Yes(())
    }

    fn pages(&self) -> Applies<()> {
        Applies::Not("a CSV file is read whole, in one page: each read is one consistent copy of the file, which a page token could not be across rewrites")
    }

    fn valid(&self, n: usize) -> Applies<Valid> {
        let email = format!("new{n}@example.com");
        Applies::Yes(Valid {
            fields: fields(&[
                ("code", &format!("new{n}")),
                ("email", &email),
                ("label", &format!("new {n}")),
            ]),
            key: vec![("email".into(), Value::text(email))],
        })
    }

    fn invalid(&self) -> Applies<Vec<Invalid>> {
        // The code of the first record made out of band.
        Applies::Yes(vec![Invalid {
            fields: fields(&[
                ("code", "k0"),
                ("email", "copy@example.com"),
                ("label", "a copy"),
            ]),
            field: "code".into(),
            category: FailureCategory::Duplicate,
        }])
    }

    fn upsert(&self) -> Applies<()> {
        Applies::Not("a create whose key the file holds fails as a duplicate; the engine looks a lost create up by its match key before creating it again")
    }

    async fn arm(&self, fault: Fault) -> Applies<()> {
        Applies::Not(match fault {
            Fault::LostAnswer => "a file is rewritten in this process: there is no answer to lose",
            Fault::RateLimited => "a file system has no request rate limit",
            Fault::ServerErrors | Fault::ServerDown => "a file system answers with no HTTP status",
        })
    }

    async fn bad_credentials(&self) -> Applies<BadCredentials> {
        Applies::Not("a folder of files has no credentials")
    }
}

#[tokio::test]
async fn the_contract_holds_on_csv_files() {
    contract::run(&Csv::new()).await;
}
