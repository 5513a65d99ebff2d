//! The connector contract: the checks every connector passes, whatever
//! system it talks to. A connector's integration tests implement
//! [`Harness`] (how to get a fresh connector, the object under test, how to
//! change the system out of band, a valid and an invalid record, how to
//! provoke its faults) and call [`run`].
//!
//! The checks:
//! 1. paging reads every record once;
//! 2. a read resumed after a restart misses nothing (changes made during
//!    the read, and after it, are read from its cursor);
//! 3. a write retried after a lost answer does not duplicate;
//! 4. one bad record in a batch fails alone, its field named;
//! 5. deletes are found;
//! 6. 401, 429 and 5xx behave as documented.
//!
//! Where a check does not apply, the harness says why ([`Applies::Not`]),
//! and the report prints it; a harness cannot opt out of what the object's
//! [`Capabilities`] (or an API connector's [`Connector::usage`]) say it
//! does. Every failure names the check, the connector, and what was
//! expected against what was seen; all checks run, and the test fails at
//! the end with the whole report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use puente_core::{
    Capabilities, ChangeDetection, Connector, ConnectorError, Cursor, ErrorKind, FailureCategory,
    Fields, Object, ObjectSpec, Record, Value, WriteOp, WriteOutcome,
};

/// Whether something applies to a connector; when not, why.
#[derive(Clone, Debug, PartialEq)]
pub enum Applies<T> {
    Yes(T),
    /// Not applicable, with the reason printed in the report.
    Not(&'static str),
}

/// How many records a check's object holds, and the page size that reads
/// it (smaller, so a read takes several pages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub records: usize,
    pub page_size: usize,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes {
            records: 24,
            page_size: 5,
        }
    }
}

/// A record the object accepts, and how to find it again.
#[derive(Clone, Debug)]
pub struct Valid {
    pub fields: Fields,
    /// The match key: the conditions [`Object::find`] is given (what the
    /// engine's intent recovery looks a lost create up by).
    pub key: Vec<(String, Value)>,
}

/// A record the object refuses, and how.
#[derive(Clone, Debug)]
pub struct Invalid {
    pub fields: Fields,
    /// The field the failure's message must name.
    pub field: String,
    pub category: FailureCategory,
}

/// A call made with credentials the system refuses.
pub struct BadCredentials {
    pub result: Result<(), ConnectorError>,
    /// The wrong secret presented: it must not appear in the error.
    pub secret: String,
}

/// A fault the harness makes the system inject until [`Harness::disarm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The answer to the next write is lost after the write happened.
    LostAnswer,
    /// Some requests, not all, are answered 429.
    RateLimited,
    /// Some requests, not all, are answered with a 5xx.
    ServerErrors,
    /// Every request is answered with a 5xx.
    ServerDown,
}

/// What a connector's test implements to run the contract.
#[async_trait]
pub trait Harness: Send + Sync {
    /// How reports and failures name the connector and object
    /// (`postgres (items)`, `hubspot sandbox (contacts)`).
    fn name(&self) -> String;

    fn sizes(&self) -> Sizes {
        Sizes::default()
    }

    /// Empties the object under test (or makes a new, empty one): every
    /// check starts here.
    async fn reset(&self);

    /// A new connector instance, as a restarted process makes it: nothing
    /// an earlier instance held in memory.
    async fn connect(&self) -> Arc<dyn Connector>;

    /// The object under test as a sync's endpoint names it, read in pages
    /// of `page_size`.
    fn spec(&self, page_size: usize) -> ObjectSpec;

    /// The text field out-of-band creates and changes set, and the checks
    /// read back.
    fn label_field(&self) -> &str;

    /// Creates one record per label out of band (through the system, not
    /// the connector); their ids, in the labels' order.
    async fn create(&self, labels: &[String]) -> Vec<String>;

    /// Sets a record's label out of band.
    async fn change(&self, id: &str, label: &str);

    /// Deletes a record out of band, or says why the system cannot.
    async fn delete(&self, id: &str) -> Applies<()>;

    /// Whether a read of more records than the page size takes several
    /// pages of at most the page size.
    fn pages(&self) -> Applies<()> {
        Applies::Yes(())
    }

    /// A record to create through the connector (`n` makes it distinct).
    fn valid(&self, n: usize) -> Applies<Valid>;

    /// Records the object refuses, each tried between two valid ones. Asked
    /// after the check created its out-of-band records, so a bad record may
    /// collide with one of them.
    fn invalid(&self) -> Applies<Vec<Invalid>>;

    /// Whether creating the same record again leaves one (an upsert on
    /// its match key).
    fn upsert(&self) -> Applies<()>;

    /// Makes the system inject `fault` from now until [`Harness::disarm`].
    async fn arm(&self, fault: Fault) -> Applies<()>;

    /// Stops the faults; how many the system injected since it was armed.
    async fn disarm(&self) -> u64 {
        0
    }

    /// A call presenting credentials the system refuses.
    async fn bad_credentials(&self) -> Applies<BadCredentials>;
}

/// The checks, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Paging,
    Resume,
    LostAnswer,
    BadRecord,
    Deletes,
    Errors,
}

impl Check {
    pub const ALL: [Check; 6] = [
        Check::Paging,
        Check::Resume,
        Check::LostAnswer,
        Check::BadRecord,
        Check::Deletes,
        Check::Errors,
    ];

    pub fn number(self) -> usize {
        Check::ALL.iter().position(|c| *c == self).expect("listed") + 1
    }

    pub fn title(self) -> &'static str {
        match self {
            Check::Paging => "paging reads every record once",
            Check::Resume => "a read resumed after a restart misses nothing",
            Check::LostAnswer => "a write retried after a lost answer does not duplicate",
            Check::BadRecord => "one bad record in a batch fails alone, its field named",
            Check::Deletes => "deletes are found",
            Check::Errors => "401, 429 and 5xx behave as documented",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "check {} ({})", self.number(), self.title())
    }
}

/// What one check found.
#[derive(Debug)]
pub struct Outcome {
    pub check: Check,
    pub elapsed: Duration,
    /// What was shown, and what was declared not applicable (and why).
    pub notes: Vec<String>,
    /// `None` when it passed: the failure otherwise.
    pub failure: Option<String>,
}

/// The outcomes of one run of the suite on one connector.
#[derive(Debug)]
pub struct Report {
    pub connector: String,
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.outcomes.iter().all(|o| o.failure.is_none())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "connector contract on {}:", self.connector)?;
        for o in &self.outcomes {
            let verdict = match &o.failure {
                None => "ok",
                Some(_) => "FAILED",
            };
            writeln!(
                f,
                "  {}. {}: {verdict} ({:.2} s)",
                o.check.number(),
                o.check.title(),
                o.elapsed.as_secs_f64()
            )?;
            for n in &o.notes {
                writeln!(f, "       {n}")?;
            }
            if let Some(why) = &o.failure {
                writeln!(f, "       {why}")?;
            }
        }
        Ok(())
    }
}

/// Runs every check on the harness's connector, prints the report, and
/// panics with it when a check failed.
pub async fn run(h: &dyn Harness) {
    let report = report(h).await;
    println!("{report}");
    if !report.passed() {
        panic!("{report}");
    }
}

/// Runs every check and returns what each found.
pub async fn report(h: &dyn Harness) -> Report {
    let mut outcomes = Vec::new();
    for check in Check::ALL {
        let mut run = Run {
            h,
            notes: Vec::new(),
        };
        let started = Instant::now();
        let result = match check {
            Check::Paging => run.paging().await,
            Check::Resume => run.resume().await,
            Check::LostAnswer => run.lost_answer().await,
            Check::BadRecord => run.bad_record().await,
            Check::Deletes => run.deletes().await,
            Check::Errors => run.errors().await,
        };
        // A check stopped half-way must not leave faults armed for the next.
        let _ = h.disarm().await;
        outcomes.push(Outcome {
            check,
            elapsed: started.elapsed(),
            failure: result
                .err()
                .map(|Failed(why)| format!("{check} failed on {}: {why}", h.name())),
            notes: run.notes,
        });
    }
    Report {
        connector: h.name(),
        outcomes,
    }
}

/// Why a check failed: what was expected, what was seen.
struct Failed(String);

type Checked<T = ()> = Result<T, Failed>;

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Checked {
    if ok {
        Ok(())
    } else {
        Err(Failed(why()))
    }
}

/// A connector call that should have succeeded.
fn call<T>(what: &str, r: Result<T, ConnectorError>) -> Checked<T> {
    r.map_err(|e| {
        Failed(format!(
            "expected {what} to succeed; it failed ({:?}): {}{}",
            e.kind,
            e.message,
            e.hint.map(|h| format!(" (hint: {h})")).unwrap_or_default()
        ))
    })
}

/// Changes made out of band this far apart, so timestamp cursors of
/// millisecond resolution order them (same-tick edits are the overlap
/// window's job, which the suite turns off to be strict).
const TICK: Duration = Duration::from_millis(15);

/// A read's pages and the cursor it ended with.
struct Read {
    pages: Vec<Vec<Record>>,
    cursor: Option<Cursor>,
}

impl Read {
    fn records(&self) -> impl Iterator<Item = &Record> {
        self.pages.iter().flatten()
    }
}

fn ids_of<'r>(rs: impl IntoIterator<Item = &'r Record>) -> Vec<String> {
    rs.into_iter().map(|r| r.id.clone()).collect()
}

/// At most this many ids in a message.
fn some(ids: &[String]) -> String {
    const MAX: usize = 12;
    let mut s = ids
        .iter()
        .take(MAX)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > MAX {
        let _ = write!(s, ", … ({} in all)", ids.len());
    }
    format!("[{s}]")
}

fn labels(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

struct Run<'h> {
    h: &'h dyn Harness,
    notes: Vec<String>,
}

impl Run<'_> {
    fn note(&mut self, s: impl Into<String>) {
        self.notes.push(s.into());
    }

    fn not_applicable(&mut self, what: &str, why: &str) {
        self.note(format!("not applicable: {what}: {why}"));
    }

    /// A harness may not opt out of what the capabilities say the object does.
    fn may_opt_out(&mut self, what: &str, why: &str, allowed: bool, because: &str) -> Checked {
        ensure(allowed, || {
            format!(
                "the harness declares {what} not applicable ({why}), but {because}, so it applies"
            )
        })?;
        self.not_applicable(what, why);
        Ok(())
    }

    /// A fresh connector (a restart) and the object opened on it.
    async fn open(&self, page_size: usize) -> Checked<(Arc<dyn Connector>, Arc<dyn Object>)> {
        let c = self.h.connect().await;
        let spec = self.h.spec(page_size);
        let o = call(&format!("opening {}", spec.object), c.open(&spec).await)?;
        Ok((c, o))
    }

    async fn read(
        &self,
        o: &dyn Object,
        since: Option<&Cursor>,
        mut token: Option<String>,
    ) -> Checked<Read> {
        let mut pages = Vec::new();
        loop {
            let what = format!("reading page {}", pages.len() + 1);
            let page = call(&what, o.read(since, token.take()).await)?;
            pages.push(page.records);
            match page.next {
                Some(t) => token = Some(t),
                None => {
                    return Ok(Read {
                        pages,
                        cursor: page.cursor,
                    })
                }
            }
            ensure(pages.len() < 10_000, || {
                "a read that ends; saw 10,000 pages and a next page still".into()
            })?;
        }
    }

    fn label(&self, r: &Record) -> Option<String> {
        r.get(self.h.label_field()).to_text()
    }

    async fn seed(&self, n: usize, prefix: &str) -> Checked<Vec<String>> {
        let labels = labels(n, prefix);
        let ids = self.h.create(&labels).await;
        let distinct: BTreeSet<&String> = ids.iter().collect();
        ensure(ids.len() == n && distinct.len() == n, || {
            format!(
                "the harness to create {n} distinct records out of band; it returned {} ids, {} distinct",
                ids.len(),
                distinct.len()
            )
        })?;
        Ok(ids)
    }

    fn sizes(&self) -> Checked<Sizes> {
        let s = self.h.sizes();
        ensure(s.page_size >= 1 && s.page_size < s.records, || {
            format!(
                "sizes with a page smaller than the object; saw {} records in pages of {}",
                s.records, s.page_size
            )
        })?;
        Ok(s)
    }

    /// 1. With a page size smaller than the object, every record appears
    ///    exactly once across the pages, none missing, each as it is now.
    async fn paging(&mut self) -> Checked {
        let Sizes { records, page_size } = self.sizes()?;
        self.h.reset().await;
        let ids = self.seed(records, "r").await?;
        let mut expected: BTreeMap<String, String> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), format!("r{i}")))
            .collect();
        // Records edited after they were created are still read once.
        tokio::time::sleep(TICK).await;
        for i in [0, records / 2] {
            let label = format!("r{i}-edited");
            self.h.change(&ids[i], &label).await;
            expected.insert(ids[i].clone(), label);
        }
        tokio::time::sleep(TICK).await;
        let (_c, o) = self.open(page_size).await?;
        let read = self.read(o.as_ref(), None, None).await?;
        let mut times: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (p, page) in read.pages.iter().enumerate() {
            for r in page {
                times.entry(&r.id).or_default().push(p + 1);
            }
        }
        let twice: Vec<String> = times
            .iter()
            .filter(|(_, pages)| pages.len() > 1)
            .map(|(id, pages)| format!("{id} (pages {pages:?})"))
            .collect();
        ensure(twice.is_empty(), || {
            format!(
                "each of {records} records read once; saw {} read more than once: {}",
                twice.len(),
                some(&twice)
            )
        })?;
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !times.contains_key(id.as_str()))
            .cloned()
            .collect();
        ensure(missing.is_empty(), || {
            format!(
                "every one of {records} records read; {} never came: {}",
                missing.len(),
                some(&missing)
            )
        })?;
        let extra: Vec<String> = times
            .keys()
            .filter(|id| !expected.contains_key(**id))
            .map(|id| id.to_string())
            .collect();
        ensure(extra.is_empty(), || {
            format!(
                "only the {records} records created; saw others too: {}",
                some(&extra)
            )
        })?;
        for r in read.records() {
            let want = &expected[&r.id];
            let seen = self.label(r);
            ensure(seen.as_deref() == Some(want.as_str()), || {
                format!(
                    "record {} read as it is now, with {} = {want:?}; saw {seen:?}",
                    r.id,
                    self.h.label_field()
                )
            })?;
        }
        let sizes: Vec<usize> = read.pages.iter().map(Vec::len).collect();
        match self.h.pages() {
            Applies::Yes(()) => {
                ensure(sizes.len() > 1, || {
                    format!("{records} records in pages of {page_size}: more than one page; saw one page of {}", sizes[0])
                })?;
                ensure(sizes.iter().all(|n| *n <= page_size), || {
                    format!("pages of at most {page_size} records; saw pages of {sizes:?}")
                })?;
            }
            Applies::Not(why) => self.not_applicable(&format!("pages of {page_size}"), why),
        }
        self.note(format!(
            "{records} records (2 edited before the read) read once each, in pages of {sizes:?}"
        ));
        Ok(())
    }

    /// 2. A read resumed from its page token by a new connector instance
    ///    reads every record, and the read from its cursor (by yet another
    ///    instance) finds every change made while it was under way (creates
    ///    included) and after it.
    async fn resume(&mut self) -> Checked {
        let Sizes { records, page_size } = self.sizes()?;
        self.h.reset().await;
        let ids = self.seed(records, "r").await?;
        tokio::time::sleep(TICK).await;

        // Phase 0: the first page, on the first instance.
        let (c1, o1) = self.open(page_size).await?;
        let caps = o1.capabilities();
        let first = call("reading the first page", o1.read(None, None).await)?;
        let mut reads: Vec<(usize, Vec<Record>)> = vec![(0, first.records.clone())];
        let first_ids: BTreeSet<String> = ids_of(&first.records).into_iter().collect();
        // (record, label, the first phase whose reads must show it)
        let mut changes: Vec<(String, String, usize, &'static str)> = Vec::new();
        tokio::time::sleep(TICK).await;
        match first.records.first() {
            Some(a) => {
                self.h.change(&a.id, "a-during").await;
                changes.push((
                    a.id.clone(),
                    "a-during".into(),
                    1,
                    "changed during the read, on a page already read",
                ));
            }
            None => {
                return Err(Failed(
                    "a first page with records; saw an empty page".into(),
                ))
            }
        }
        tokio::time::sleep(TICK).await;
        let unread = ids
            .iter()
            .rev()
            .find(|id| !first_ids.contains(*id))
            .cloned();
        if let Some(b) = &unread {
            self.h.change(b, "b-during").await;
            changes.push((
                b.clone(),
                "b-during".into(),
                1,
                "changed during the read, on a page not read yet",
            ));
            tokio::time::sleep(TICK).await;
        }
        let c = self.h.create(&["c-during".to_string()]).await;
        ensure(c.len() == 1, || {
            format!("the harness to create 1 record; it returned {c:?}")
        })?;
        changes.push((
            c[0].clone(),
            "c-during".into(),
            1,
            "created during the read",
        ));
        tokio::time::sleep(TICK).await;
        drop((o1, c1));

        // Phase 1: a restart, and the rest of the read from its page token.
        let (c2, o2) = self.open(page_size).await?;
        let cursor = match first.next {
            Some(token) => {
                let rest = self.read(o2.as_ref(), None, Some(token)).await?;
                let n = rest.pages.len();
                reads.push((1, rest.records().cloned().collect()));
                self.note(format!(
                    "the first read: 1 page, a restart, then {n} more pages from its page token"
                ));
                rest.cursor
            }
            None => {
                ensure(unread.is_none(), || {
                    "a next page while records remain unread; saw none".into()
                })?;
                self.note("the first read was one page: nothing to resume; what changed during it is read from its cursor");
                first.cursor
            }
        };
        if caps.change_detection != ChangeDetection::FullRead {
            ensure(cursor.is_some(), || {
                format!(
                    "a cursor at the end of a full read (change detection {:?}); saw none",
                    caps.change_detection
                )
            })?;
        }
        let read_once: BTreeSet<String> = reads.iter().flat_map(|(_, rs)| ids_of(rs)).collect();
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !read_once.contains(*id))
            .cloned()
            .collect();
        ensure(missing.is_empty(), || {
            format!(
                "the read resumed after the restart to read every one of the {records} records; {} never came: {}",
                missing.len(),
                some(&missing)
            )
        })?;

        // Phase 2: changes after the read; another restart reads from its cursor.
        tokio::time::sleep(TICK).await;
        let d = ids[records / 2].clone();
        self.h.change(&d, "d-after").await;
        changes.push((d, "d-after".into(), 2, "changed after the read"));
        tokio::time::sleep(TICK).await;
        let e = self.h.create(&["e-after".to_string()]).await;
        ensure(e.len() == 1, || {
            format!("the harness to create 1 record; it returned {e:?}")
        })?;
        changes.push((e[0].clone(), "e-after".into(), 2, "created after the read"));
        tokio::time::sleep(TICK).await;
        drop((o2, c2));
        let (_c3, o3) = self.open(page_size).await?;
        let next = self.read(o3.as_ref(), cursor.as_ref(), None).await?;
        let next_ids = ids_of(next.records());
        let from_cursor = if cursor.is_some() {
            "the read from its cursor"
        } else {
            "the next read (a full one: the read ended with no cursor)"
        };
        reads.push((2, next.records().cloned().collect()));

        for (id, label, from, what) in &changes {
            let found = reads
                .iter()
                .filter(|(phase, _)| phase >= from)
                .flat_map(|(_, rs)| rs)
                .any(|r| &r.id == id && self.label(r).as_deref() == Some(label.as_str()));
            ensure(found, || {
                let by = if *from == 1 {
                    format!(
                        "neither by the rest of the read after the restart nor by {from_cursor}"
                    )
                } else {
                    format!("not by {from_cursor}")
                };
                format!(
                    "record {id} ({what}, {} = {label:?}) read; it was not: {by}, which returned {}",
                    self.h.label_field(),
                    some(&next_ids)
                )
            })?;
        }
        self.note(format!(
            "{} changes (during the read and after it) all read; {from_cursor} returned {} records",
            changes.len(),
            next_ids.len()
        ));
        Ok(())
    }

    /// Whether the writes checks apply: a valid record, unless the object
    /// is read-only.
    fn valid(&mut self, caps: &Capabilities, n: usize) -> Checked<Option<Valid>> {
        match self.h.valid(n) {
            Applies::Yes(v) => Ok(Some(v)),
            Applies::Not(why) => {
                self.may_opt_out(
                    "writes",
                    why,
                    !caps.writable,
                    "the object's capabilities say it is writable",
                )?;
                Ok(None)
            }
        }
    }

    async fn find_one(&self, o: &dyn Object, v: &Valid, what: &str) -> Checked<Record> {
        let found = call(
            &format!("finding {what} by its match key"),
            o.find(&v.key).await,
        )?;
        let key = v
            .key
            .iter()
            .map(|(k, v)| format!("{k} = {}", v.describe()))
            .collect::<Vec<_>>()
            .join(", ");
        ensure(found.len() == 1, || {
            format!(
                "{what} found exactly once by its match key ({key}); found {} records: {}",
                found.len(),
                some(&ids_of(&found))
            )
        })?;
        Ok(found.into_iter().next().expect("one"))
    }

    /// 3. After a create whose answer is lost, the record is found exactly
    ///    once by its match key; where the create is an upsert, repeating
    ///    it leaves one record.
    async fn lost_answer(&mut self) -> Checked {
        let Sizes { page_size, .. } = self.sizes()?;
        self.h.reset().await;
        let ids = self.seed(3, "r").await?;
        let (c1, o1) = self.open(page_size).await?;
        let caps = o1.capabilities();
        let Some(valid) = self.valid(&caps, 1)? else {
            return Ok(());
        };
        let lost = match self.h.arm(Fault::LostAnswer).await {
            Applies::Yes(()) => true,
            Applies::Not(why) => {
                self.may_opt_out(
                    "a lost answer",
                    why,
                    c1.usage().is_none(),
                    "the connector calls an API (it reports usage), whose answers can be lost",
                )?;
                self.note("the create's answer is set aside instead, as if it were lost");
                false
            }
        };
        let out = o1
            .write(vec![WriteOp::Create {
                fields: valid.fields.clone(),
            }])
            .await;
        if lost {
            let injected = self.h.disarm().await;
            ensure(injected > 0, || {
                "the system to lose an answer once armed; it lost none".into()
            })?;
        }
        let written = match out {
            Ok(outcomes) => {
                ensure(outcomes.len() == 1, || {
                    format!("one outcome for one write; saw {outcomes:?}")
                })?;
                match outcomes.into_iter().next().expect("one") {
                    WriteOutcome::Written(r) => Some(r.id),
                    WriteOutcome::Failed(f) if lost => {
                        self.note(format!("the create whose answer was lost failed: {f}"));
                        None
                    }
                    other => {
                        return Err(Failed(format!("the create to be written; saw {other:?}")))
                    }
                }
            }
            Err(e) if lost => {
                self.note(format!(
                    "the create whose answer was lost failed ({:?}): {}",
                    e.kind, e.message
                ));
                None
            }
            Err(e) => return call("creating a record", Err(e)),
        };
        if lost && written.is_some() {
            self.note("the connector retried the create after the lost answer");
        }
        drop((o1, c1));
        let (c2, o2) = self.open(page_size).await?;
        let found = self
            .find_one(o2.as_ref(), &valid, "after a restart, the created record")
            .await?;
        if let Some(id) = &written {
            ensure(&found.id == id, || {
                format!(
                    "the record found by its match key to be the one written ({id}); found {}",
                    found.id
                )
            })?;
        }
        match self.h.upsert() {
            Applies::Yes(()) => {
                let again = call(
                    "repeating the create",
                    o2.write(vec![WriteOp::Create {
                        fields: valid.fields.clone(),
                    }])
                    .await,
                )?;
                ensure(
                    matches!(again.as_slice(), [WriteOutcome::Written(r)] if r.id == found.id),
                    || {
                        format!(
                            "the repeated create (an upsert) to write record {} again; saw {again:?}",
                            found.id
                        )
                    },
                )?;
                drop((o2, c2));
                let (_c3, o3) = self.open(page_size).await?;
                self.find_one(
                    o3.as_ref(),
                    &valid,
                    "after the create was repeated, the record",
                )
                .await?;
            }
            Applies::Not(why) => self.not_applicable("repeating the create", why),
        }
        let (_c, o) = self.open(page_size).await?;
        let listed = call("listing ids", o.list_ids().await)?;
        ensure(listed.len() == ids.len() + 1, || {
            format!(
                "{} records ({} made out of band and the one created); listed {}: {}",
                ids.len() + 1,
                ids.len(),
                listed.len(),
                some(&listed)
            )
        })?;
        Ok(())
    }

    /// 4. A batch of good, bad, good writes gives Written, Failed (the
    ///    category, a message naming the field, a hint), Written; the good
    ///    ones are really there.
    async fn bad_record(&mut self) -> Checked {
        let Sizes { page_size, .. } = self.sizes()?;
        self.h.reset().await;
        self.seed(3, "r").await?;
        let (_c, o) = self.open(page_size).await?;
        let caps = o.capabilities();
        let Some(_) = self.valid(&caps, 0)? else {
            return Ok(());
        };
        let invalid = match self.h.invalid() {
            Applies::Yes(list) => list,
            Applies::Not(why) => {
                return self.may_opt_out(
                    "bad records",
                    why,
                    !caps.writable,
                    "the object's capabilities say it is writable",
                )
            }
        };
        ensure(!invalid.is_empty(), || {
            "the harness to give at least one invalid record; it gave none".into()
        })?;
        for (k, bad) in invalid.iter().enumerate() {
            let (good1, good2) = match (self.h.valid(10 + 2 * k), self.h.valid(11 + 2 * k)) {
                (Applies::Yes(a), Applies::Yes(b)) => (a, b),
                _ => {
                    return Err(Failed(
                        "the harness to give valid records; it did not".into(),
                    ))
                }
            };
            let (_c, o) = self.open(page_size).await?;
            let out = call(
                "writing a batch of good, bad, good creates",
                o.write(vec![
                    WriteOp::Create {
                        fields: good1.fields.clone(),
                    },
                    WriteOp::Create {
                        fields: bad.fields.clone(),
                    },
                    WriteOp::Create {
                        fields: good2.fields.clone(),
                    },
                ])
                .await,
            )?;
            let shown = format!("{out:?}");
            let [WriteOutcome::Written(r1), WriteOutcome::Failed(f), WriteOutcome::Written(r2)] =
                out.as_slice()
            else {
                return Err(Failed(format!(
                    "Written, Failed, Written for a batch of good, bad ({}), good; saw {shown}",
                    bad.field
                )));
            };
            ensure(f.category == bad.category, || {
                format!(
                    "the bad record ({}) to fail as {}; it failed as {}: {}",
                    bad.field, bad.category, f.category, f.message
                )
            })?;
            ensure(f.message.contains(&bad.field), || {
                format!(
                    "the failure's message to name the field {}; it says: {}",
                    bad.field, f.message
                )
            })?;
            ensure(!f.hint.trim().is_empty(), || {
                format!("a hint with the failure ({}); saw none", f.message)
            })?;
            let (_c, o) = self.open(page_size).await?;
            let there = call(
                "reading the written records by id",
                o.read_by_ids(&[r1.id.clone(), r2.id.clone()]).await,
            )?;
            let there: BTreeSet<String> = ids_of(&there).into_iter().collect();
            ensure(there.contains(&r1.id) && there.contains(&r2.id), || {
                format!(
                    "the two good records ({} and {}) there after the batch; a read by id found {}",
                    r1.id,
                    r2.id,
                    some(&there.into_iter().collect::<Vec<_>>())
                )
            })?;
            self.find_one(o.as_ref(), &good1, "the first good record")
                .await?;
            self.find_one(o.as_ref(), &good2, "the second good record")
                .await?;
            self.note(format!("bad {}: {}: {}", bad.field, f.category, f.message));
        }
        Ok(())
    }

    /// 5. A record deleted out of band is no longer listed, nor read by id,
    ///    nor read by a full read.
    async fn deletes(&mut self) -> Checked {
        let Sizes { page_size, .. } = self.sizes()?;
        self.h.reset().await;
        let ids = self.seed(6, "r").await?;
        let (c, o) = self.open(page_size).await?;
        let caps = o.capabilities();
        let listed: BTreeSet<String> = call("listing ids", o.list_ids().await)?
            .into_iter()
            .collect();
        let all: BTreeSet<String> = ids.iter().cloned().collect();
        ensure(listed == all, || {
            format!(
                "list_ids to list the 6 records {}; it listed {}",
                some(&ids),
                some(&listed.iter().cloned().collect::<Vec<_>>())
            )
        })?;
        let gone = ids[2].clone();
        if let Applies::Not(why) = self.h.delete(&gone).await {
            return self.may_opt_out(
                "deletes",
                why,
                !caps.delete_detection_by_key_diff,
                "the object's capabilities say deletes are found by listing ids",
            );
        }
        drop((o, c));
        let (_c, o) = self.open(page_size).await?;
        let listed = call("listing ids", o.list_ids().await)?;
        let rest: BTreeSet<String> = all.iter().filter(|id| **id != gone).cloned().collect();
        ensure(!listed.contains(&gone), || {
            format!("record {gone}, deleted out of band, no longer listed; list_ids still lists it")
        })?;
        ensure(
            listed.iter().cloned().collect::<BTreeSet<_>>() == rest,
            || {
                format!(
                    "list_ids to list the 5 records left {}; it listed {}",
                    some(&rest.iter().cloned().collect::<Vec<_>>()),
                    some(&listed)
                )
            },
        )?;
        let by_id = call(
            "reading by id",
            o.read_by_ids(&[gone.clone(), ids[3].clone()]).await,
        )?;
        ensure(ids_of(&by_id) == vec![ids[3].clone()], || {
            format!(
                "a read by id of [{gone} (deleted), {}] to return only {}; it returned {}",
                ids[3],
                ids[3],
                some(&ids_of(&by_id))
            )
        })?;
        let full = self.read(o.as_ref(), None, None).await?;
        let full_ids = ids_of(full.records());
        ensure(!full_ids.contains(&gone), || {
            format!("a full read to leave out record {gone}, deleted; it read it")
        })?;
        Ok(())
    }

    /// 6. Bad credentials are an `Auth` error with a hint (never showing
    ///    the secret); a 429 is waited out, retried and counted; 5xx are
    ///    retried with backoff, and a persistent one is an external error.
    async fn errors(&mut self) -> Checked {
        let Sizes { page_size, .. } = self.sizes()?;
        self.h.reset().await;
        let ids = self.seed(3, "r").await?;
        let want: BTreeSet<String> = ids.iter().cloned().collect();
        let (c, o) = self.open(page_size).await?;
        let caps = o.capabilities();
        let api = c.usage().is_some();

        match self.h.bad_credentials().await {
            Applies::Yes(BadCredentials { result, secret }) => {
                let e = match result {
                    Ok(()) => {
                        return Err(Failed(
                            "an Auth error for bad credentials; the call succeeded".into(),
                        ))
                    }
                    Err(e) => e,
                };
                ensure(e.kind == ErrorKind::Auth, || {
                    format!(
                        "bad credentials to be an Auth error; saw {:?}: {}",
                        e.kind, e.message
                    )
                })?;
                let hint = e.hint.clone().unwrap_or_default();
                ensure(!hint.trim().is_empty(), || {
                    format!("a hint with the Auth error ({}); saw none", e.message)
                })?;
                ensure(
                    secret.is_empty() || !(e.message.contains(&secret) || hint.contains(&secret)),
                    || "the secret presented kept out of the error; it shows in it".to_string(),
                )?;
                self.note(format!("401: {} (hint: {hint})", e.message));
            }
            Applies::Not(why) => self.may_opt_out(
                "bad credentials",
                why,
                !api,
                "the connector calls an API (it reports usage), which takes credentials",
            )?,
        }

        match self.h.arm(Fault::RateLimited).await {
            Applies::Yes(()) => {
                let before = usage(c.as_ref())?;
                let mut calls = 0;
                let mut after = before.clone();
                while after.rate_limited == before.rate_limited && calls < 20 {
                    calls += 1;
                    let listed = call(
                        "listing ids while some requests meet a 429",
                        o.list_ids().await,
                    )?;
                    same_ids(&want, &listed, "listing ids while some requests meet a 429")?;
                    after = usage(c.as_ref())?;
                }
                let injected = self.h.disarm().await;
                ensure(after.rate_limited > before.rate_limited, || {
                    format!(
                        "the 429s met to be counted (Usage::rate_limited); {calls} calls went through, the system injected {injected} faults, and the count stayed at {}",
                        after.rate_limited
                    )
                })?;
                self.note(format!(
                    "429: {} met, waited out and retried; {calls} calls succeeded",
                    after.rate_limited - before.rate_limited
                ));
            }
            Applies::Not(why) => self.may_opt_out(
                "429",
                why,
                caps.rate_limit_per_sec.is_none(),
                "the object's capabilities name a rate limit",
            )?,
        }

        match self.h.arm(Fault::ServerErrors).await {
            Applies::Yes(()) => {
                let before = usage(c.as_ref())?;
                let mut calls = 0;
                let mut after = before.clone();
                while after.server_errors == before.server_errors && calls < 20 {
                    calls += 1;
                    let listed = call(
                        "listing ids while some requests meet a 5xx",
                        o.list_ids().await,
                    )?;
                    same_ids(&want, &listed, "listing ids while some requests meet a 5xx")?;
                    after = usage(c.as_ref())?;
                }
                self.h.disarm().await;
                ensure(after.server_errors > before.server_errors, || {
                    format!(
                        "the 5xx met to be counted (Usage::server_errors); {calls} calls went through and the count stayed at {}",
                        after.server_errors
                    )
                })?;
                self.note(format!(
                    "5xx: {} met and retried; {calls} calls succeeded",
                    after.server_errors - before.server_errors
                ));
                match self.h.arm(Fault::ServerDown).await {
                    Applies::Yes(()) => {
                        let before = usage(c.as_ref())?;
                        let started = Instant::now();
                        let r = o.list_ids().await;
                        let took = started.elapsed();
                        self.h.disarm().await;
                        let after = usage(c.as_ref())?;
                        let e = match r {
                            Ok(ids) => {
                                return Err(Failed(format!(
                                    "an error while every request meets a 5xx; the call succeeded with {}",
                                    some(&ids)
                                )))
                            }
                            Err(e) => e,
                        };
                        ensure(e.kind == ErrorKind::External, || {
                            format!(
                                "a persistent 5xx to be an External error; saw {:?}: {}",
                                e.kind, e.message
                            )
                        })?;
                        ensure(e.hint.as_deref().is_some_and(|h| !h.trim().is_empty()), || {
                            format!("a hint with the External error ({}); saw none", e.message)
                        })?;
                        let attempts = after.server_errors - before.server_errors;
                        ensure(attempts >= 2, || {
                            format!("a persistent 5xx retried before giving up; saw {attempts} attempt(s)")
                        })?;
                        let least = Duration::from_millis(100) * (attempts as u32 - 1);
                        ensure(took >= least, || {
                            format!(
                                "retries spaced by a backoff: {attempts} attempts in at least {least:?}; they took {took:?}"
                            )
                        })?;
                        self.note(format!(
                            "persistent 5xx: {attempts} attempts over {:.1} s, then: {}",
                            took.as_secs_f64(),
                            e.message
                        ));
                    }
                    Applies::Not(why) => {
                        return Err(Failed(format!(
                            "a persistent 5xx provoked where some 5xx are; the harness declares it not applicable ({why})"
                        )))
                    }
                }
            }
            Applies::Not(why) => self.may_opt_out(
                "5xx",
                why,
                !api,
                "the connector calls an API (it reports usage), whose server can fail",
            )?,
        }
        Ok(())
    }
}

fn usage(c: &dyn Connector) -> Checked<puente_core::Usage> {
    c.usage().ok_or_else(|| {
        Failed(
            "a connector that meets 429s and 5xx to count them (Connector::usage); it reports none"
                .into(),
        )
    })
}

fn same_ids(want: &BTreeSet<String>, got: &[String], what: &str) -> Checked {
    let got_set: BTreeSet<String> = got.iter().cloned().collect();
    ensure(&got_set == want && got.len() == want.len(), || {
        format!(
            "{what} to list {}; it listed {}",
            some(&want.iter().cloned().collect::<Vec<_>>()),
            some(got)
        )
    })
}
