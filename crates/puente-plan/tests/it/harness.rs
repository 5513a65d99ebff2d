//! Two in-memory sides and a state map, driven the way the engine drives
//! the planner: read what changed, plan, apply, record what the target holds.

use std::collections::{BTreeMap, HashMap};

use puente_core::normalize::KeyNormalizer;
use puente_core::{Fields, Record, Side, Value};
use puente_plan::{
    key_of, plan, plan_deletes, render, seen_after_write, Entry, FieldMap, MatchKey, Plan,
    PlanInput, PlannedWrite, Status, SyncSpec,
};

#[derive(Default, Clone, Debug)]
pub struct Store {
    pub rows: BTreeMap<String, Fields>,
    pub dirty: std::collections::BTreeSet<String>,
    next: u64,
    prefix: &'static str,
    /// Lower-cases e-mails it is given, as some systems do.
    pub lowercases: bool,
}

impl Store {
    pub fn new(prefix: &'static str) -> Store {
        Store {
            prefix,
            ..Store::default()
        }
    }

    pub fn insert(&mut self, fields: &[(&str, &str)]) -> String {
        self.next += 1;
        let id = format!("{}{}", self.prefix, self.next);
        let f: Fields = fields
            .iter()
            .map(|(k, v)| (k.to_string(), Value::text(*v)))
            .collect();
        self.rows.insert(id.clone(), f);
        self.dirty.insert(id.clone());
        id
    }

    pub fn set(&mut self, id: &str, field: &str, v: &str) {
        self.rows
            .get_mut(id)
            .unwrap()
            .insert(field.into(), Value::text(v));
        self.dirty.insert(id.to_string());
    }

    pub fn get(&self, id: &str, field: &str) -> Value {
        self.rows[id].get(field).cloned().unwrap_or(Value::Null)
    }

    fn changes(&mut self) -> Vec<Record> {
        let ids = std::mem::take(&mut self.dirty);
        ids.into_iter()
            .filter_map(|id| {
                self.rows.get(&id).map(|f| Record {
                    id: id.clone(),
                    fields: f.clone(),
                    modified_at: None,
                    unreadable: Default::default(),
                })
            })
            .collect()
    }

    fn write(&mut self, w: &PlannedWrite) -> Record {
        let fix = |k: &str, v: &Value, lc: bool| {
            if lc && k.contains("email") {
                Value::text(v.to_text().unwrap_or_default().to_lowercase())
            } else {
                v.clone()
            }
        };
        match w {
            PlannedWrite::Create { fields } => {
                self.next += 1;
                let id = format!("{}{}", self.prefix, self.next);
                let f = fields
                    .iter()
                    .map(|(k, v)| (k.clone(), fix(k, v, self.lowercases)))
                    .collect();
                self.rows.insert(id.clone(), f);
                Record {
                    id: id.clone(),
                    fields: self.rows[&id].clone(),
                    modified_at: None,
                    unreadable: Default::default(),
                }
            }
            PlannedWrite::Update { id, changes } => {
                let row = self.rows.get_mut(id).unwrap();
                for c in changes {
                    row.insert(c.field.clone(), fix(&c.field, &c.new, self.lowercases));
                }
                Record {
                    id: id.clone(),
                    fields: row.clone(),
                    modified_at: None,
                    unreadable: Default::default(),
                }
            }
            PlannedWrite::Delete { id } => {
                self.rows.remove(id);
                Record::new(id.clone())
            }
        }
    }
}

pub struct World {
    pub spec: SyncSpec,
    pub a: Store,
    pub b: Store,
    pub entries: BTreeMap<i64, Entry>,
    next_entry: i64,
    pub refs: HashMap<(String, Side, String), String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    pub writes: usize,
    pub conflicts: usize,
    pub echoes: u32,
}

pub fn contacts_spec() -> SyncSpec {
    let mut spec = SyncSpec::new(
        "contacts",
        vec![
            FieldMap::new("email", "email"),
            FieldMap::new("name", "full_name"),
            FieldMap::new("city", "town"),
        ],
    );
    spec.keys = vec![MatchKey {
        a: "email".into(),
        b: "email".into(),
        normalizer: KeyNormalizer::Email,
    }];
    spec
}

impl World {
    pub fn new(spec: SyncSpec) -> World {
        World {
            spec,
            a: Store::new("a"),
            b: Store::new("b"),
            entries: BTreeMap::new(),
            next_entry: 0,
            refs: HashMap::new(),
        }
    }

    fn side(&mut self, s: Side) -> &mut Store {
        match s {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Deletes first (key diff: whatever a side no longer holds), then the
    /// changes, planned against entries that already carry the deletes.
    fn plan_now(&mut self) -> Plan {
        let mut deletes = Vec::new();
        for side in [Side::A, Side::B] {
            let gone: Vec<Entry> = self
                .entries
                .values()
                .filter(|e| {
                    e.id_on(side)
                        .is_some_and(|id| !self.side_ref(side).rows.contains_key(id))
                })
                .cloned()
                .collect();
            deletes.extend(plan_deletes(&self.spec, &gone, side));
        }
        let mut entries = self.entries.clone();
        for d in &deletes {
            if let Some(e) = d.entry_id.and_then(|id| entries.get_mut(&id)) {
                e.deleted_a |= d.deleted_a;
                e.deleted_b |= d.deleted_b;
            }
        }
        let mut a = self.a.changes();
        let mut b = self.b.changes();
        // As the engine does: records of entries sharing a key with what was
        // read are read too, so a first sight merges current values.
        let keys: std::collections::HashSet<String> = a
            .iter()
            .filter_map(|r| key_of(&self.spec, Side::A, &r.fields))
            .chain(
                b.iter()
                    .filter_map(|r| key_of(&self.spec, Side::B, &r.fields)),
            )
            .collect();
        for e in entries.values() {
            let shares = [&e.key_a, &e.key_b]
                .iter()
                .any(|k| k.as_ref().is_some_and(|k| keys.contains(k)));
            if !shares {
                continue;
            }
            for (side, read) in [(Side::A, &mut a), (Side::B, &mut b)] {
                let store = if side == Side::A { &self.a } else { &self.b };
                if let Some(id) = e.id_on(side) {
                    if !e.deleted_on(side) && !read.iter().any(|r| &r.id == id) {
                        if let Some(f) = store.rows.get(id) {
                            let mut r = Record::new(id.clone());
                            r.fields = f.clone();
                            read.push(r);
                        }
                    }
                }
            }
        }
        let p = plan(
            &self.spec,
            PlanInput {
                a,
                b,
                entries: &entries.into_values().collect::<Vec<_>>(),
                refs: &self.refs,
            },
        );
        deletes.extend(p.items);
        Plan { items: deletes }
    }

    fn side_ref(&self, s: Side) -> &Store {
        match s {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// One run: plan, apply every write, record entries. Returns the plan text.
    pub fn run(&mut self) -> (String, RunStats) {
        let p = self.plan_now();
        let text = render(&p);
        let mut stats = RunStats::default();
        for mut it in p.items {
            stats.conflicts += it.conflicts.len();
            stats.echoes += it.echoes;
            for d in &it.drop_entries {
                self.entries.remove(d);
            }
            if !it.changed {
                if it.echoes > 0 {
                    if let Some(e) = it.entry_id.and_then(|id| self.entries.get_mut(&id)) {
                        e.echo_a = false;
                        e.echo_b = false;
                    }
                }
                continue;
            }
            let mut e = match it.entry_id.and_then(|id| self.entries.get(&id).cloned()) {
                Some(e) => e,
                None => {
                    self.next_entry += 1;
                    Entry::new(self.next_entry)
                }
            };
            if it.drop_entries.contains(&e.id) {
                continue;
            }
            it.fill(&mut e);
            e.echo_a = false;
            e.echo_b = false;
            for side in [Side::A, Side::B] {
                if let Some(w) = it.write(side) {
                    stats.writes += 1;
                    let rec = self.side(side).write(w);
                    // As the engine does.
                    let mapped = seen_after_write(&self.spec, side, e.seen(side), w, &rec.fields);
                    match (side, w) {
                        (_, PlannedWrite::Delete { .. }) => match side {
                            Side::A => e.deleted_a = true,
                            Side::B => e.deleted_b = true,
                        },
                        (Side::A, _) => {
                            e.a_id = Some(rec.id);
                            e.seen_a = Some(mapped);
                            e.echo_a = true;
                        }
                        (Side::B, _) => {
                            e.b_id = Some(rec.id);
                            e.seen_b = Some(mapped);
                            e.echo_b = true;
                        }
                    }
                }
            }
            for c in &it.conflicts {
                if c.winner.is_none() {
                    e.held.insert(c.field_a.clone());
                }
            }
            for f in &it.resolved {
                e.held.remove(f);
                e.resolutions.remove(f);
            }
            let drop = it.drop_entries.contains(&e.id);
            if !drop {
                self.entries.insert(e.id, e);
            }
        }
        // Everything written is read back on the next run, as cursors would.
        let written_a: Vec<String> = self
            .entries
            .values()
            .filter(|e| e.echo_a)
            .filter_map(|e| e.a_id.clone())
            .collect();
        let written_b: Vec<String> = self
            .entries
            .values()
            .filter(|e| e.echo_b)
            .filter_map(|e| e.b_id.clone())
            .collect();
        self.a.dirty.extend(written_a);
        self.b.dirty.extend(written_b);
        (text, stats)
    }

    pub fn entry_of(&self, side: Side, id: &str) -> &Entry {
        self.entries
            .values()
            .find(|e| e.id_on(side).map(String::as_str) == Some(id))
            .expect("entry")
    }

    pub fn partner(&self, side: Side, id: &str) -> Option<String> {
        self.entry_of(side, id).id_on(side.other()).cloned()
    }

    pub fn status_of(&self, side: Side, id: &str) -> Status {
        self.entry_of(side, id).status.clone()
    }
}
