use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use puente_core::{normalize, Failure, FailureCategory, FieldType, Fields, Record, Side, Value};
use rustc_hash::FxHashMap;

use crate::spec::{ConflictPolicy, DeletePolicy, FieldMap, MatchKey, SyncSpec};

/// Translates the id of a parent record (a record of another sync) from one
/// side to the other, through that sync's links.
pub trait RefLookup {
    fn translate(&self, parent: &str, from: Side, id: &str) -> Option<String>;
}

impl RefLookup for HashMap<(String, Side, String), String> {
    fn translate(&self, parent: &str, from: Side, id: &str) -> Option<String> {
        self.get(&(parent.to_string(), from, id.to_string()))
            .cloned()
    }
}

/// A person's decision on a held conflict.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    Take(Side),
    Value(Value),
}

impl Resolution {
    /// A person's choice as typed or clicked: `a`, `b`, or a value of their own.
    pub fn from_choice(take: &str) -> Resolution {
        match Side::parse(take) {
            Some(side) => Resolution::Take(side),
            None => Resolution::Value(Value::text(take)),
        }
    }
}

/// A record's state in one sync, as the state store holds it.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    InSync,
    Failed(Failure),
    Excluded(Exclusion),
    Waiting(Wait),
    Deleted,
}

/// Why a record is left out of a sync. Each variant carries the message a
/// person reads (naming the record, the field or the key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exclusion {
    /// The endpoint's filter does not admit it.
    Filter(String),
    /// A match key field is empty.
    NoMatchKey(String),
    /// Several records on one side share its match key.
    Ambiguous(String),
    /// Its match on the other side is excluded by the filter.
    MatchesExcluded(String),
    /// It exists only on the side the sync's direction does not read from.
    OneWay(String),
    /// It was merged into a record that is linked to another one.
    Merged(String),
}

/// Why a record waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// A parent it references is not linked yet.
    Parent(String),
    /// Its match on the other side could not be read.
    Unread(String),
    /// A person's decision on held conflicts.
    Conflict(String),
    /// An unpaired b record: compared with every a record before it is
    /// created on a (later in the same pass).
    Matching,
    /// A create held until both sides are read in full (a gradual exchange).
    Backfill,
}

impl Exclusion {
    /// A stable code, stored beside the message and used to group.
    pub fn code(&self) -> &'static str {
        match self {
            Exclusion::Filter(_) => "filter",
            Exclusion::NoMatchKey(_) => "no_match_key",
            Exclusion::Ambiguous(_) => "ambiguous",
            Exclusion::MatchesExcluded(_) => "matches_excluded",
            Exclusion::OneWay(_) => "one_way",
            Exclusion::Merged(_) => "merged",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Exclusion::Filter(m)
            | Exclusion::NoMatchKey(m)
            | Exclusion::Ambiguous(m)
            | Exclusion::MatchesExcluded(m)
            | Exclusion::OneWay(m)
            | Exclusion::Merged(m) => m,
        }
    }

    /// What a person can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Exclusion::Filter(_) => {
                "change the record, or the endpoint's filter, if it should sync"
            }
            Exclusion::NoMatchKey(_) => "fill the match key field on that record",
            Exclusion::Ambiguous(_) => {
                "merge the duplicates on that side, or correct the key of the wrong one"
            }
            Exclusion::MatchesExcluded(_) => {
                "the two records are the same thing: change the filter, or the record it excludes"
            }
            Exclusion::OneWay(_) => {
                "change the sync's direction to two-way if it should be created there"
            }
            Exclusion::Merged(_) => {
                "merge the two records on the other side too (the link of the survivor stays)"
            }
        }
    }

    /// The exclusion a stored code and message stand for.
    pub fn from_stored(code: &str, message: String) -> Option<Exclusion> {
        Some(match code {
            "filter" => Exclusion::Filter(message),
            "no_match_key" => Exclusion::NoMatchKey(message),
            "ambiguous" => Exclusion::Ambiguous(message),
            "matches_excluded" => Exclusion::MatchesExcluded(message),
            "one_way" => Exclusion::OneWay(message),
            "merged" => Exclusion::Merged(message),
            _ => return None,
        })
    }
}

impl Wait {
    pub fn code(&self) -> &'static str {
        match self {
            Wait::Parent(_) => "parent",
            Wait::Unread(_) => "unread",
            Wait::Conflict(_) => "conflict",
            Wait::Matching => "matching",
            Wait::Backfill => "backfill",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Wait::Parent(m) | Wait::Unread(m) | Wait::Conflict(m) => m,
            Wait::Matching => "matching: compared with every a record before it is created there",
            Wait::Backfill => "backfill: created once both sides are read in full",
        }
    }

    pub fn from_stored(code: &str, message: String) -> Option<Wait> {
        Some(match code {
            "parent" => Wait::Parent(message),
            "unread" => Wait::Unread(message),
            "conflict" => Wait::Conflict(message),
            "matching" => Wait::Matching,
            "backfill" => Wait::Backfill,
            _ => return None,
        })
    }
}

impl Status {
    pub fn name(&self) -> &'static str {
        match self {
            Status::InSync => "in_sync",
            Status::Failed(_) => "failed",
            Status::Excluded(_) => "excluded",
            Status::Waiting(_) => "waiting",
            Status::Deleted => "deleted",
        }
    }
}

/// What Puente knows of one record pair (or one unpaired record).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub id: i64,
    pub a_id: Option<String>,
    pub b_id: Option<String>,
    pub key_a: Option<String>,
    pub key_b: Option<String>,
    /// Seen values: the mapped fields as Puente last read or wrote them.
    pub seen_a: Option<Fields>,
    pub seen_b: Option<Fields>,
    pub deleted_a: bool,
    pub deleted_b: bool,
    /// Puente wrote to that side and has not read the record back since.
    pub echo_a: bool,
    pub echo_b: bool,
    pub status: Status,
    /// A-side names of fields held by an open manual conflict.
    pub held: BTreeSet<String>,
    /// Decisions on held conflicts, by A-side field name.
    pub resolutions: BTreeMap<String, Resolution>,
}

impl Entry {
    pub fn new(id: i64) -> Entry {
        Entry {
            id,
            a_id: None,
            b_id: None,
            key_a: None,
            key_b: None,
            seen_a: None,
            seen_b: None,
            deleted_a: false,
            deleted_b: false,
            echo_a: false,
            echo_b: false,
            status: Status::InSync,
            held: BTreeSet::new(),
            resolutions: BTreeMap::new(),
        }
    }

    pub fn id_on(&self, side: Side) -> Option<&String> {
        match side {
            Side::A => self.a_id.as_ref(),
            Side::B => self.b_id.as_ref(),
        }
    }

    /// Sets one side's id, seen values and match key.
    pub fn set_side(
        &mut self,
        side: Side,
        id: Option<String>,
        seen: Option<Fields>,
        key: Option<String>,
    ) {
        match side {
            Side::A => (self.a_id, self.seen_a, self.key_a) = (id, seen, key),
            Side::B => (self.b_id, self.seen_b, self.key_b) = (id, seen, key),
        }
    }

    pub fn deleted_on(&self, side: Side) -> bool {
        match side {
            Side::A => self.deleted_a,
            Side::B => self.deleted_b,
        }
    }

    pub fn seen(&self, side: Side) -> Option<&Fields> {
        match side {
            Side::A => self.seen_a.as_ref(),
            Side::B => self.seen_b.as_ref(),
        }
    }

    pub fn key(&self, side: Side) -> Option<&String> {
        match side {
            Side::A => self.key_a.as_ref(),
            Side::B => self.key_b.as_ref(),
        }
    }

    fn linked(&self) -> bool {
        self.a_id.is_some() && self.b_id.is_some()
    }

    /// Linked, and the record is on both sides (neither side deleted).
    pub fn live_pair(&self) -> bool {
        self.linked() && !self.deleted_a && !self.deleted_b
    }
}

/// What the planner is given: the records read from each side this run
/// (changes and revisits) and the entries that concern them.
pub struct PlanInput<'a> {
    pub a: Vec<Record>,
    pub b: Vec<Record>,
    /// Entries for the records read, and entries found by their match keys.
    /// Only read: the caller keeps them (the engine needs them to apply).
    pub entries: &'a [Entry],
    pub refs: &'a dyn RefLookup,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FieldChange {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PlannedWrite {
    Create {
        fields: Fields,
    },
    Update {
        id: String,
        changes: Vec<FieldChange>,
    },
    Delete {
        id: String,
    },
}

impl PlannedWrite {
    /// The target fields this write sets.
    pub fn fields(&self) -> Vec<&str> {
        match self {
            PlannedWrite::Create { fields } => fields.keys().map(String::as_str).collect(),
            PlannedWrite::Update { changes, .. } => {
                changes.iter().map(|c| c.field.as_str()).collect()
            }
            PlannedWrite::Delete { .. } => Vec::new(),
        }
    }
}

/// A field that changed on both sides to different values.
#[derive(Clone, Debug, PartialEq)]
pub struct ConflictNote {
    pub field_a: String,
    pub field_b: String,
    pub value_a: Value,
    pub value_b: Value,
    /// The side whose value was kept; `None` when the field is held for a person.
    pub winner: Option<Side>,
}

/// The plan for one record pair (or one unpaired record).
#[derive(Clone, Debug, PartialEq)]
pub struct ItemPlan {
    pub entry_id: Option<i64>,
    pub a_id: Option<String>,
    pub b_id: Option<String>,
    pub key_a: Option<String>,
    pub key_b: Option<String>,
    pub write_a: Option<PlannedWrite>,
    pub write_b: Option<PlannedWrite>,
    /// Seen values once the writes succeed (the engine replaces a written
    /// side's with what the target reports it holds).
    pub seen_a: Option<Fields>,
    pub seen_b: Option<Fields>,
    pub deleted_a: bool,
    pub deleted_b: bool,
    pub status: Status,
    pub conflicts: Vec<ConflictNote>,
    /// A-side fields whose held conflict is settled by this plan.
    pub resolved: Vec<String>,
    /// Entries merged into this one (to remove first).
    pub drop_entries: Vec<i64>,
    /// Reads of records whose values were Puente's own last write. An item
    /// with echoes but nothing `changed` only needs its echo flags cleared.
    pub echoes: u32,
    /// This plan records a record found missing on that side.
    pub detected_delete: Option<Side>,
    /// Something must be persisted (writes, seen values, status, keys).
    pub changed: bool,
}

impl ItemPlan {
    fn blank(entry: Option<&Entry>) -> ItemPlan {
        let mut it = ItemPlan::blank_unseen(entry);
        it.seen_a = entry.and_then(|e| e.seen_a.clone());
        it.seen_b = entry.and_then(|e| e.seen_b.clone());
        it
    }

    /// Like `blank`, without copying the seen values (for merges, which
    /// set them).
    fn blank_unseen(entry: Option<&Entry>) -> ItemPlan {
        ItemPlan {
            entry_id: entry.map(|e| e.id),
            a_id: entry.and_then(|e| e.a_id.clone()),
            b_id: entry.and_then(|e| e.b_id.clone()),
            key_a: entry.and_then(|e| e.key_a.clone()),
            key_b: entry.and_then(|e| e.key_b.clone()),
            write_a: None,
            write_b: None,
            seen_a: None,
            seen_b: None,
            deleted_a: entry.is_some_and(|e| e.deleted_a),
            deleted_b: entry.is_some_and(|e| e.deleted_b),
            status: Status::InSync,
            conflicts: Vec::new(),
            resolved: Vec::new(),
            drop_entries: Vec::new(),
            echoes: 0,
            detected_delete: None,
            changed: true,
        }
    }

    /// Moves what this plan decided (ids, keys, seen values, deletes,
    /// status) onto the entry it concerns, leaving this plan without its
    /// ids, keys and seen values; echo flags are the caller's.
    pub fn fill(&mut self, e: &mut Entry) {
        e.set_side(
            Side::A,
            self.a_id.take(),
            self.seen_a.take(),
            self.key_a.take(),
        );
        e.set_side(
            Side::B,
            self.b_id.take(),
            self.seen_b.take(),
            self.key_b.take(),
        );
        e.deleted_a = self.deleted_a;
        e.deleted_b = self.deleted_b;
        e.status = if self.deleted_a || self.deleted_b {
            Status::Deleted
        } else {
            self.status.clone()
        };
    }

    pub fn write(&self, side: Side) -> Option<&PlannedWrite> {
        match side {
            Side::A => self.write_a.as_ref(),
            Side::B => self.write_b.as_ref(),
        }
    }

    pub fn id(&self, side: Side) -> Option<&String> {
        match side {
            Side::A => self.a_id.as_ref(),
            Side::B => self.b_id.as_ref(),
        }
    }

    pub fn seen(&self, side: Side) -> Option<&Fields> {
        match side {
            Side::A => self.seen_a.as_ref(),
            Side::B => self.seen_b.as_ref(),
        }
    }

    pub fn key(&self, side: Side) -> Option<&String> {
        match side {
            Side::A => self.key_a.as_ref(),
            Side::B => self.key_b.as_ref(),
        }
    }

    fn set_write(&mut self, side: Side, w: PlannedWrite) {
        match side {
            Side::A => self.write_a = Some(w),
            Side::B => self.write_b = Some(w),
        }
    }

    fn set_seen(&mut self, side: Side, s: Option<Fields>) {
        match side {
            Side::A => self.seen_a = s,
            Side::B => self.seen_b = s,
        }
    }

    fn set_key(&mut self, side: Side, k: Option<String>) {
        match side {
            Side::A => self.key_a = k,
            Side::B => self.key_b = k,
        }
    }

    fn set_id(&mut self, side: Side, id: Option<String>) {
        match side {
            Side::A => self.a_id = id,
            Side::B => self.b_id = id,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub items: Vec<ItemPlan>,
}

impl Plan {
    pub fn writes(&self) -> usize {
        self.items
            .iter()
            .map(|i| i.write_a.is_some() as usize + i.write_b.is_some() as usize)
            .sum()
    }
}

/// Why a value could not be carried across.
enum Issue {
    Fail(Failure),
    Wait(String),
}

/// A record that has no partner yet.
struct Candidate {
    side: Side,
    entry: Option<usize>,
    rec: Record,
    read: bool,
    /// It may be created on the other side (read now, not a tombstone's partner).
    may_create: bool,
    filtered_out: bool,
    key: Option<String>,
}

/// Plans one run of a sync.
pub fn plan(spec: &SyncSpec, input: PlanInput<'_>) -> Plan {
    let PlanInput {
        a,
        b,
        entries,
        refs,
    } = input;
    let mut by_id: [FxHashMap<&str, usize>; 2] = [
        FxHashMap::with_capacity_and_hasher(entries.len(), Default::default()),
        FxHashMap::with_capacity_and_hasher(entries.len(), Default::default()),
    ];
    for (i, e) in entries.iter().enumerate() {
        if let Some(id) = &e.a_id {
            by_id[0].insert(id.as_str(), i);
        }
        if let Some(id) = &e.b_id {
            by_id[1].insert(id.as_str(), i);
        }
    }

    // Linked pairs read this run, by entry index (in entry order).
    let mut pairs: Vec<Option<[Option<Record>; 2]>> = vec![None; entries.len()];
    // Sized once: a plan's items are large, and a growing vector copies
    // them all each time it outgrows its room.
    let records = a.len() + b.len();
    let mut cands: Vec<Candidate> = Vec::with_capacity(records);
    let mut consumed = vec![false; entries.len()];
    let mut items = Vec::with_capacity(records + entries.len());
    for (side, records) in [(Side::A, a), (Side::B, b)] {
        let si = side_index(side);
        for rec in records {
            if let Some(f) = unreadable(spec, side, &rec) {
                let ei = by_id[si].get(rec.id.as_str()).copied();
                if let Some(ei) = ei {
                    consumed[ei] = true;
                }
                let mut it = ItemPlan::blank(ei.map(|i| &entries[i]));
                if ei.is_none() {
                    it.set_id(side, Some(rec.id.clone()));
                }
                it.status = Status::Failed(f);
                items.push(it);
                continue;
            }
            match by_id[si].get(rec.id.as_str()).copied() {
                Some(ei) => {
                    consumed[ei] = true;
                    let e = &entries[ei];
                    if e.linked() && !e.deleted_on(side.other()) {
                        pairs[ei].get_or_insert_with(Default::default)[si] = Some(rec);
                    } else {
                        let may_create = !e.linked();
                        cands.push(Candidate {
                            side,
                            entry: Some(ei),
                            rec,
                            read: true,
                            may_create,
                            filtered_out: false,
                            key: None,
                        });
                    }
                }
                None => cands.push(Candidate {
                    side,
                    entry: None,
                    rec,
                    read: true,
                    may_create: true,
                    filtered_out: false,
                    key: None,
                }),
            }
        }
    }

    for (ei, [ra, rb]) in pairs
        .into_iter()
        .enumerate()
        .filter_map(|(ei, p)| p.map(|p| (ei, p)))
    {
        items.push(merge_linked(spec, refs, &entries[ei], ra, rb));
    }

    // Same-side key counts from linked entries, for ambiguity; unread
    // unpaired entries become match candidates.
    let mut linked_keys: FxHashMap<(Side, String), usize> = FxHashMap::default();
    for (ei, e) in entries.iter().enumerate() {
        if consumed[ei] {
            continue;
        }
        for side in [Side::A, Side::B] {
            let (Some(id), Some(seen)) = (e.id_on(side), e.seen(side)) else {
                continue;
            };
            if e.deleted_on(side) {
                continue;
            }
            let partner_gone = e.id_on(side.other()).is_none() || e.deleted_on(side.other());
            if partner_gone {
                let mut rec = Record::new(id.clone());
                rec.fields = seen.clone();
                cands.push(Candidate {
                    side,
                    entry: Some(ei),
                    rec,
                    read: false,
                    may_create: false,
                    filtered_out: matches!(&e.status, Status::Excluded(Exclusion::Filter(_))),
                    key: e.key(side).cloned(),
                });
            } else if let Some(k) = e.key(side) {
                *linked_keys.entry((side, k.clone())).or_default() += 1;
            }
        }
    }

    // Filters and keys.
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut keyless: Vec<usize> = Vec::new();
    for (ci, c) in cands.iter_mut().enumerate() {
        if c.read {
            if let Some(f) = spec.filter(c.side) {
                c.filtered_out = match f.test(&c.rec.fields) {
                    Ok(pass) => !pass,
                    Err(_) => true,
                };
            }
            c.key = key_of(spec, c.side, &c.rec.fields);
        }
        if spec.keys.is_empty() {
            keyless.push(ci);
        } else if let Some(k) = &c.key {
            groups.entry(k.clone()).or_default().push(ci);
        } else if c.read {
            let missing = missing_key_field(spec, c.side, &c.rec.fields);
            let status = if c.filtered_out {
                filter_reason(spec, c.side)
            } else {
                Exclusion::NoMatchKey(format!(
                    "no match key: field {missing} is empty on {}",
                    c.side
                ))
            };
            items.push(single(spec, entries, c, Status::Excluded(status)));
        }
    }
    for ci in keyless {
        let c = &cands[ci];
        if c.read {
            items.push(unmatched(spec, refs, entries, c));
        }
    }
    for (key, members) in groups {
        let count = |side: Side| {
            members.iter().filter(|&&m| cands[m].side == side).count()
                + linked_keys.get(&(side, key.clone())).copied().unwrap_or(0)
        };
        let (na, nb) = (count(Side::A), count(Side::B));
        if na > 1 || nb > 1 {
            let (side, n) = if na > 1 { (Side::A, na) } else { (Side::B, nb) };
            let reason = Exclusion::Ambiguous(format!(
                "ambiguous match key {key:?}: {n} records on {side} share it"
            ));
            for &m in &members {
                items.push(single(
                    spec,
                    entries,
                    &cands[m],
                    Status::Excluded(reason.clone()),
                ));
            }
            continue;
        }
        let blocked = members.iter().find(|&&m| cands[m].filtered_out).copied();
        if let Some(bm) = blocked {
            for &m in &members {
                let c = &cands[m];
                let reason = if m == bm {
                    filter_reason(spec, c.side)
                } else {
                    Exclusion::MatchesExcluded(format!(
                        "matches {} record {} that the filter excludes",
                        cands[bm].side, cands[bm].rec.id
                    ))
                };
                if c.read || m != bm {
                    items.push(single(spec, entries, c, Status::Excluded(reason)));
                }
            }
            continue;
        }
        let ca = members.iter().find(|&&m| cands[m].side == Side::A).copied();
        let cb = members.iter().find(|&&m| cands[m].side == Side::B).copied();
        match (ca, cb) {
            (Some(ma), Some(mb)) => {
                let (x, y) = (&cands[ma], &cands[mb]);
                match (x.read, y.read) {
                    (true, true) => items.push(first_sight(spec, refs, entries, x, y)),
                    (false, false) => {}
                    // Seen values may be stale: merging needs both records as
                    // they are now. The engine reads key matches first, so
                    // this is a record that is gone but not yet known deleted.
                    _ => {
                        let (read, unread) = if x.read { (x, y) } else { (y, x) };
                        let reason = Wait::Unread(format!(
                            "matches {} record {}, which could not be read; it is linked once that record is found or known deleted",
                            unread.side, unread.rec.id
                        ));
                        items.push(single(spec, entries, read, Status::Waiting(reason)));
                    }
                }
            }
            (Some(m), None) | (None, Some(m)) => {
                let c = &cands[m];
                if c.read {
                    items.push(unmatched(spec, refs, entries, c));
                }
            }
            (None, None) => {}
        }
    }
    let by_entry: FxHashMap<i64, &Entry> = entries.iter().map(|e| (e.id, e)).collect();
    for it in &mut items {
        if !it.changed {
            continue;
        }
        let prior = it.entry_id.and_then(|id| by_entry.get(&id).copied());
        if let Some(e) = prior {
            it.changed = it.write_a.is_some()
                || it.write_b.is_some()
                || !it.conflicts.is_empty()
                || !it.resolved.is_empty()
                || !it.drop_entries.is_empty()
                || it.status != e.status
                || it.a_id != e.a_id
                || it.b_id != e.b_id
                || it.key_a != e.key_a
                || it.key_b != e.key_b
                || it.deleted_a != e.deleted_a
                || it.deleted_b != e.deleted_b
                || !same_fields(it.seen_a.as_ref(), e.seen_a.as_ref())
                || !same_fields(it.seen_b.as_ref(), e.seen_b.as_ref());
        }
    }
    Plan { items }
}

/// A failure for a record whose mapped or key fields could not be read.
fn unreadable(spec: &SyncSpec, side: Side, rec: &Record) -> Option<Failure> {
    if rec.unreadable.is_empty() {
        return None;
    }
    let used = |n: &String| {
        spec.fields.iter().any(|fm| fm.name(side) == n)
            || spec.keys.iter().any(|k| {
                if side == Side::A {
                    &k.a == n
                } else {
                    &k.b == n
                }
            })
    };
    let (field, why) = rec.unreadable.iter().find(|(n, _)| used(n))?;
    Some(
        Failure::new(
            FailureCategory::Validation,
            format!("{side} record {} field {field}: {why}", rec.id),
        )
        .with_hint("fix the stored value at the source (for text: valid UTF-8, no NUL bytes); the record is retried on its next change"),
    )
}

fn same_fields(x: Option<&Fields>, y: Option<&Fields>) -> bool {
    match (x, y) {
        (None, None) => true,
        (Some(x), Some(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| v.same(w)))
        }
        _ => false,
    }
}

fn side_index(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

fn filter_reason(spec: &SyncSpec, side: Side) -> Exclusion {
    let src = spec.filter(side).map(|f| f.source()).unwrap_or("");
    Exclusion::Filter(format!("filter: {side} record does not satisfy {src:?}"))
}

/// The normalised match key of a record, `None` when a key field is empty.
pub fn key_of(spec: &SyncSpec, side: Side, fields: &Fields) -> Option<String> {
    if spec.keys.is_empty() {
        return None;
    }
    let part = |k: &MatchKey| {
        let name = if side == Side::A { &k.a } else { &k.b };
        k.normalizer
            .apply(fields.get(name)?, spec.phone_region.as_deref())
    };
    if let [only] = spec.keys.as_slice() {
        return part(only);
    }
    let parts: Option<Vec<String>> = spec.keys.iter().map(part).collect();
    Some(parts?.join("\u{1f}"))
}

fn missing_key_field<'s>(spec: &'s SyncSpec, side: Side, fields: &Fields) -> &'s str {
    spec.keys
        .iter()
        .map(|k| if side == Side::A { &k.a } else { &k.b })
        .find(|n| fields.get(*n).is_none_or(Value::is_empty))
        .map(String::as_str)
        .unwrap_or("?")
}

/// A side's seen values once `write` succeeded and the target reports
/// `held` for the record. A create: the record as the target holds it. An
/// update: the written fields as the target holds them, every other field
/// as planned, so a held conflict or a change made meanwhile still reads as
/// a change on the next run.
pub fn seen_after_write(
    spec: &SyncSpec,
    side: Side,
    planned: Option<&Fields>,
    write: &PlannedWrite,
    held: &Fields,
) -> Fields {
    match write {
        PlannedWrite::Update { changes, .. } => {
            let mut seen = planned.cloned().unwrap_or_default();
            for c in changes {
                let v = held.get(&c.field).cloned().unwrap_or(Value::Null);
                seen.insert(c.field.clone(), v);
            }
            seen
        }
        _ => mapped(spec, side, held),
    }
}

/// The mapped fields of a record, as its side names them: what Puente keeps
/// as that side's seen values.
pub fn mapped(spec: &SyncSpec, side: Side, fields: &Fields) -> Fields {
    spec.fields
        .iter()
        .map(|fm| {
            let n = fm.name(side);
            (n.to_string(), fields.get(n).cloned().unwrap_or(Value::Null))
        })
        .collect()
}

/// An item that only records a status for one record.
fn single(spec: &SyncSpec, entries: &[Entry], c: &Candidate, status: Status) -> ItemPlan {
    let e = c.entry.map(|i| &entries[i]);
    let mut it = ItemPlan::blank(e);
    if e.is_none_or(|e| !e.linked()) {
        it.set_id(c.side, Some(c.rec.id.clone()));
    }
    it.set_key(c.side, c.key.clone());
    if c.read {
        it.set_seen(c.side, Some(mapped(spec, c.side, &c.rec.fields)));
    }
    it.status = status;
    it
}

/// Carries one value from `from` to the other side: parent reference,
/// value map, transform, type conversion.
fn translate(
    spec: &SyncSpec,
    fm: &FieldMap,
    from: Side,
    value: &Value,
    record: &Fields,
    refs: &dyn RefLookup,
) -> Result<Value, Issue> {
    let to = from.other();
    if value.is_empty() {
        return Ok(Value::Null);
    }
    // Borrowed until a step changes it: most fields only convert.
    let mut v: Cow<'_, Value> = Cow::Borrowed(value);
    if let Some(parent) = &fm.parent {
        let id = v.to_text().unwrap_or_default();
        match refs.translate(parent, from, &id) {
            Some(t) => v = Cow::Owned(Value::text(t)),
            None => return Err(Issue::Wait(format!("waiting on {parent} {from}:{id}"))),
        }
    }
    let map = match from {
        Side::A => &fm.values_a_to_b,
        Side::B => &fm.values_b_to_a,
    };
    if !map.is_empty() {
        let lookup = |t: &str| {
            map.get(t).cloned().ok_or_else(|| {
                Issue::Fail(
                    Failure::new(
                        FailureCategory::Mapping,
                        format!(
                            "field {}: no value map entry for {t:?} (towards {} field {})",
                            fm.name(from),
                            to,
                            fm.name(to)
                        ),
                    )
                    .with_hint(format!(
                        "add {t:?} to the values of the mapping {} ↔ {}, then run the sync again",
                        fm.a, fm.b
                    )),
                )
            })
        };
        v = Cow::Owned(match v.as_ref() {
            Value::MultiEnum(set) => Value::MultiEnum(
                set.iter()
                    .map(|s| lookup(s))
                    .collect::<Result<BTreeSet<_>, _>>()?,
            ),
            other => Value::text(lookup(&other.to_text().unwrap_or_default())?),
        });
    }
    let transform = match from {
        Side::A => fm.transform_a_to_b.as_ref(),
        Side::B => fm.transform_b_to_a.as_ref(),
    };
    if let Some(t) = transform {
        v = Cow::Owned(t.eval(record, Some(&v)).map_err(|e| {
            Issue::Fail(Failure::new(
                FailureCategory::Mapping,
                format!("field {}: {e}", fm.name(from)),
            ))
        })?);
    }
    let ty = fm.ty(to);
    if *ty == FieldType::Phone {
        if let Some(e164) = v
            .to_text()
            .and_then(|t| normalize::phone_e164(&t, spec.phone_region.as_deref()))
        {
            v = Cow::Owned(Value::Phone(e164));
        }
    }
    v.convert(ty, fm.name(to)).map_err(|e| {
        Issue::Fail(Failure::new(
            e.category,
            format!("{} (from {from} field {})", e.message, fm.name(from)),
        ))
    })
}

/// Creates an unmatched record on the other side, or says why not.
fn unmatched(spec: &SyncSpec, refs: &dyn RefLookup, entries: &[Entry], c: &Candidate) -> ItemPlan {
    let from = c.side;
    let to = from.other();
    if c.filtered_out {
        return single(
            spec,
            entries,
            c,
            Status::Excluded(filter_reason(spec, from)),
        );
    }
    if !spec.direction.flows_from(from) {
        return single(
            spec,
            entries,
            c,
            Status::Excluded(Exclusion::OneWay(format!(
                "exists only on {from}; the sync is {} so it is not created on {to}",
                spec.direction.as_str()
            ))),
        );
    }
    if !c.may_create {
        // Its partner was deleted (keep): nothing flows, and the seen values
        // stay so that a restore carries this side's changes over.
        let mut it = ItemPlan::blank(c.entry.map(|i| &entries[i]));
        it.changed = false;
        return it;
    }
    let mut payload = Fields::new();
    let mut fails = Vec::new();
    let mut waits = Vec::new();
    for fm in &spec.fields {
        if !spec.field_flows(fm, from) {
            continue;
        }
        match translate(
            spec,
            fm,
            from,
            c.rec.get(fm.name(from)),
            &c.rec.fields,
            refs,
        ) {
            Ok(v) if v.is_empty() => {}
            Ok(v) => {
                payload.insert(fm.name(to).to_string(), v);
            }
            Err(Issue::Fail(f)) => fails.push(f),
            Err(Issue::Wait(w)) => waits.push(w),
        }
    }
    for r in spec.required(to) {
        if !payload.contains_key(r) {
            fails.push(
                Failure::new(
                    FailureCategory::Validation,
                    format!(
                        "field {r} is required on {to} and {from} record {} gives it no value",
                        c.rec.id
                    ),
                )
                .with_hint(format!(
                    "fill the mapped field on {from}, map a field to {r}, or give {r} a default on {to}"
                )),
            );
        }
    }
    let status = outcome_status(&fails, &waits);
    let mut it = single(spec, entries, c, status.clone().unwrap_or(Status::InSync));
    if status.is_none() {
        it.set_key(to, key_of(spec, to, &payload));
        it.set_write(to, PlannedWrite::Create { fields: payload });
        // The target's seen values are what it reports after the create
        // (the engine records its read-back), not the payload.
    }
    it
}

/// A failure, a wait, or nothing in the way.
fn outcome_status(fails: &[Failure], waits: &[String]) -> Option<Status> {
    if let Some(first) = fails.first() {
        let mut f = first.clone();
        if fails.len() > 1 {
            let rest: Vec<String> = fails[1..].iter().map(|f| f.message.clone()).collect();
            f.message = format!("{}; also: {}", f.message, rest.join("; "));
        }
        return Some(Status::Failed(f));
    }
    if !waits.is_empty() {
        return Some(Status::Waiting(Wait::Parent(waits.join("; "))));
    }
    None
}

/// Two records seen together for the first time: every differing field is a
/// conflict settled by the policy.
fn first_sight(
    spec: &SyncSpec,
    refs: &dyn RefLookup,
    entries: &[Entry],
    x: &Candidate,
    y: &Candidate,
) -> ItemPlan {
    let (ca, cb) = if x.side == Side::A { (x, y) } else { (y, x) };
    let ea = ca.entry.map(|i| &entries[i]);
    let eb = cb.entry.map(|i| &entries[i]);
    let keep = ea.or(eb);
    let mut it = ItemPlan::blank_unseen(keep);
    if let (Some(ea), Some(eb)) = (ea, eb) {
        if ea.id != eb.id {
            it.drop_entries.push(eb.id);
        }
    }
    it.a_id = Some(ca.rec.id.clone());
    it.b_id = Some(cb.rec.id.clone());
    it.key_a = ca.key.clone();
    it.key_b = cb.key.clone();
    it.deleted_a = false;
    it.deleted_b = false;
    let empty = BTreeMap::new();
    let held = keep.map(|e| &e.held).cloned().unwrap_or_default();
    merge_fields(
        spec,
        refs,
        &mut it,
        [View::of(&ca.rec), View::of(&cb.rec)],
        [None, None],
        &empty,
        &held,
    );
    it
}

/// A linked pair: the three-way merge against the seen values.
fn merge_linked(
    spec: &SyncSpec,
    refs: &dyn RefLookup,
    e: &Entry,
    ra: Option<Record>,
    rb: Option<Record>,
) -> ItemPlan {
    let mut it = ItemPlan::blank_unseen(Some(e));
    // A record read again after being marked deleted has come back.
    it.deleted_a = e.deleted_a && ra.is_none();
    it.deleted_b = e.deleted_b && rb.is_none();
    let read = [ra.is_some(), rb.is_some()];
    let empty = Fields::new();
    let a = View::or_seen(&ra, e, Side::A, &empty);
    let b = View::or_seen(&rb, e, Side::B, &empty);
    if read[0] {
        it.key_a = key_of(spec, Side::A, a.fields).or(it.key_a);
    }
    if read[1] {
        it.key_b = key_of(spec, Side::B, b.fields).or(it.key_b);
    }
    let echoes = [
        read[0] && e.echo_a && unchanged(spec, Side::A, a.fields, e.seen_a.as_ref()),
        read[1] && e.echo_b && unchanged(spec, Side::B, b.fields, e.seen_b.as_ref()),
    ];
    it.echoes = echoes.iter().filter(|x| **x).count() as u32;
    merge_fields(
        spec,
        refs,
        &mut it,
        [a, b],
        [e.seen_a.as_ref(), e.seen_b.as_ref()],
        &e.resolutions,
        &e.held,
    );
    it
}

fn unchanged(spec: &SyncSpec, side: Side, fields: &Fields, seen: Option<&Fields>) -> bool {
    let Some(seen) = seen else { return false };
    spec.fields.iter().all(|fm| {
        let n = fm.name(side);
        let v = fields.get(n).unwrap_or(&Value::Null);
        seen.get(n).is_some_and(|s| v.same(s))
    })
}

/// Decides who wins a conflict on one field; `None` holds it.
fn settle(spec: &SyncSpec, fm: &FieldMap, modified: [Option<DateTime<Utc>>; 2]) -> Option<Side> {
    let (fa, fb) = (spec.field_flows(fm, Side::A), spec.field_flows(fm, Side::B));
    if fa && !fb {
        return Some(Side::A);
    }
    if fb && !fa {
        return Some(Side::B);
    }
    if let Some(owner) = fm.owner {
        return Some(owner);
    }
    match spec.policy {
        ConflictPolicy::Winner => Some(spec.winner),
        ConflictPolicy::Manual => None,
        ConflictPolicy::Newest => match modified {
            [Some(ma), Some(mb)] if ma > mb => Some(Side::A),
            [Some(ma), Some(mb)] if mb > ma => Some(Side::B),
            _ => Some(spec.winner),
        },
    }
}

/// A record as the merge sees it: read, or stood in for by seen values.
#[derive(Clone, Copy)]
struct View<'r> {
    id: &'r str,
    fields: &'r Fields,
    modified_at: Option<DateTime<Utc>>,
    /// Read now, not stood in for by seen values.
    read: bool,
}

impl<'r> View<'r> {
    fn of(r: &'r Record) -> View<'r> {
        View {
            id: &r.id,
            fields: &r.fields,
            modified_at: r.modified_at,
            read: true,
        }
    }

    /// The record if it was read, else its seen values (borrowed).
    fn or_seen(r: &'r Option<Record>, e: &'r Entry, side: Side, empty: &'r Fields) -> View<'r> {
        match r {
            Some(r) => View::of(r),
            None => View {
                id: e.id_on(side).map(String::as_str).unwrap_or(""),
                fields: e.seen(side).unwrap_or(empty),
                modified_at: None,
                read: false,
            },
        }
    }

    fn get(&self, field: &str) -> &'r Value {
        static NULL: Value = Value::Null;
        self.fields.get(field).unwrap_or(&NULL)
    }
}

/// The field-by-field merge (docs/semantics.md, "The merge, field by field").
fn merge_fields(
    spec: &SyncSpec,
    refs: &dyn RefLookup,
    it: &mut ItemPlan,
    recs: [View<'_>; 2],
    seen: [Option<&Fields>; 2],
    resolutions: &BTreeMap<String, Resolution>,
    held: &BTreeSet<String>,
) {
    let mut new_seen = [
        seen[0].cloned().unwrap_or_default(),
        seen[1].cloned().unwrap_or_default(),
    ];
    let mut changes: [Vec<FieldChange>; 2] = [Vec::new(), Vec::new()];
    let mut fails = Vec::new();
    let mut waits = Vec::new();
    let mut held_now = Vec::new();
    let modified = [recs[0].modified_at, recs[1].modified_at];

    for fm in &spec.fields {
        let names = [fm.a.as_str(), fm.b.as_str()];
        let cur = [recs[0].get(names[0]), recs[1].get(names[1])];

        let prev = [
            seen[0].and_then(|s| s.get(names[0])),
            seen[1].and_then(|s| s.get(names[1])),
        ];
        let changed = [
            prev[0].is_none_or(|p| !cur[0].same(p)),
            prev[1].is_none_or(|p| !cur[1].same(p)),
        ];
        // What each side should hold once this field is settled.
        let mut target: [Option<Value>; 2] = [None, None];
        let mut carry = |from: Side, target: &mut [Option<Value>; 2]| {
            let si = side_index(from);
            match translate(spec, fm, from, cur[si], recs[si].fields, refs) {
                Ok(v) => target[side_index(from.other())] = Some(v),
                Err(Issue::Fail(f)) => fails.push(f),
                Err(Issue::Wait(w)) => waits.push(w),
            }
        };

        if let Some(res) = resolutions.get(&fm.a) {
            match res {
                Resolution::Take(side) => carry(*side, &mut target),
                Resolution::Value(v) => match v.convert(&fm.ty_a, &fm.a) {
                    Ok(va) => {
                        match translate(spec, fm, Side::A, &va, recs[0].fields, refs) {
                            Ok(vb) => target[1] = Some(vb),
                            Err(Issue::Fail(f)) => fails.push(f),
                            Err(Issue::Wait(w)) => waits.push(w),
                        }
                        target[0] = Some(va);
                    }
                    Err(e) => fails.push(Failure::new(e.category, e.message)),
                },
            }
            it.resolved.push(fm.a.clone());
        } else {
            match changed {
                [false, false] => {}
                [true, false] | [false, true] => {
                    let from = if changed[0] { Side::A } else { Side::B };
                    if spec.field_flows(fm, from) {
                        carry(from, &mut target);
                    }
                }
                [true, true] => {
                    // Both moved: equal after translation is no conflict.
                    let mut probe = [None, None];
                    let agreed = if spec.field_flows(fm, Side::A) {
                        carry(Side::A, &mut probe);
                        probe[1].as_ref().is_some_and(|v| v.same(cur[1]))
                    } else if spec.field_flows(fm, Side::B) {
                        carry(Side::B, &mut probe);
                        probe[0].as_ref().is_some_and(|v| v.same(cur[0]))
                    } else {
                        true
                    };
                    if !agreed && (probe[0].is_some() || probe[1].is_some()) {
                        let winner = settle(spec, fm, modified);
                        it.conflicts.push(ConflictNote {
                            field_a: fm.a.clone(),
                            field_b: fm.b.clone(),
                            value_a: cur[0].clone(),
                            value_b: cur[1].clone(),
                            winner,
                        });
                        match winner {
                            None => {
                                held_now.push(fm.a.clone());
                                continue;
                            }
                            Some(w) => {
                                let wi = side_index(w);
                                if cur[wi].is_empty() && !cur[1 - wi].is_empty() {
                                    // An empty winner never overwrites; the
                                    // other value flows back when it may.
                                    if spec.field_flows(fm, w.other()) {
                                        carry(w.other(), &mut target);
                                    }
                                } else {
                                    carry(w, &mut target);
                                }
                            }
                        }
                    }
                }
            }
        }
        if held.contains(&fm.a) && !it.resolved.contains(&fm.a) && !held_now.contains(&fm.a) {
            it.resolved.push(fm.a.clone());
        }
        for si in 0..2 {
            match &target[si] {
                // A side stood in for by its seen values may hold something
                // else by now (a one-way target is not read every pass): a
                // value carried to it is written even if it equals them.
                Some(t) if !t.same(cur[si]) || !recs[si].read => {
                    changes[si].push(FieldChange {
                        field: names[si].to_string(),
                        old: cur[si].clone(),
                        new: t.clone(),
                    });
                    new_seen[si].insert(names[si].to_string(), t.clone());
                }
                _ => match new_seen[si].get_mut(names[si]) {
                    // Most fields did not move: leave the seen value be.
                    Some(v) if v == cur[si] => {}
                    Some(v) => *v = cur[si].clone(),
                    None => {
                        new_seen[si].insert(names[si].to_string(), cur[si].clone());
                    }
                },
            }
        }
    }

    if let Some(status) = outcome_status(&fails, &waits) {
        // Nothing is written; the seen values stay so the change is retried.
        it.status = status;
        it.seen_a = seen[0].cloned();
        it.seen_b = seen[1].cloned();
        it.conflicts.clear();
        it.resolved.clear();
        return;
    }
    for (si, side) in [Side::A, Side::B].into_iter().enumerate() {
        let ch = std::mem::take(&mut changes[si]);
        if !ch.is_empty() {
            let id = recs[si].id.to_string();
            it.set_write(side, PlannedWrite::Update { id, changes: ch });
        }
    }
    it.seen_a = Some(std::mem::take(&mut new_seen[0]));
    it.seen_b = Some(std::mem::take(&mut new_seen[1]));
    it.status = if held_now.is_empty() {
        Status::InSync
    } else {
        Status::Waiting(Wait::Conflict(format!(
            "conflict decision on field {}",
            held_now.join(", ")
        )))
    };
}

/// Plans what follows from records found missing on `side` (by key diff).
pub fn plan_deletes(spec: &SyncSpec, entries: &[Entry], side: Side) -> Vec<ItemPlan> {
    let other = side.other();
    entries
        .iter()
        .filter(|e| e.id_on(side).is_some() && !e.deleted_on(side))
        .map(|e| {
            let mut it = ItemPlan::blank(Some(e));
            match side {
                Side::A => it.deleted_a = true,
                Side::B => it.deleted_b = true,
            }
            it.status = Status::Deleted;
            it.detected_delete = Some(side);
            if let Some(oid) = e.id_on(other) {
                if spec.deletes == DeletePolicy::Propagate
                    && !e.deleted_on(other)
                    && spec.direction.flows_from(side)
                {
                    it.set_write(other, PlannedWrite::Delete { id: oid.clone() });
                }
            } else {
                // Never paired: nothing to keep a tombstone for.
                it.drop_entries.push(e.id);
            }
            it
        })
        .collect()
}
