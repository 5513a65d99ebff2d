//! For any two record sets and any sequence of edits, a run with no
//! concurrent edits leaves both sides agreeing on every mapped field of every
//! linked pair, and the next run writes nothing.

use proptest::prelude::*;
use puente_core::{Side, Value};
use puente_plan::{ConflictPolicy, Status};

use crate::harness::{contacts_spec, World};

#[derive(Clone, Debug)]
enum Edit {
    Insert(Side, u8, u8, u8),
    Set(Side, u8, u8, u8),
    Delete(Side, u8),
}

const EMAILS: [&str; 6] = [
    "ann@x.com",
    "bob@x.com",
    "cy@x.com",
    "di@x.com",
    "ed@x.com",
    "flo@x.com",
];
const WORDS: [&str; 5] = ["", "Oslo", "Rome", "Lima", "Kyiv"];

fn edit() -> impl Strategy<Value = Edit> {
    let side = prop_oneof![Just(Side::A), Just(Side::B)];
    prop_oneof![
        (side.clone(), 0u8..6, 0u8..5, 0u8..5).prop_map(|(s, e, n, c)| Edit::Insert(s, e, n, c)),
        (side.clone(), any::<u8>(), 0u8..3, 0u8..5).prop_map(|(s, r, f, v)| Edit::Set(s, r, f, v)),
        (side, any::<u8>()).prop_map(|(s, r)| Edit::Delete(s, r)),
    ]
}

fn apply(w: &mut World, e: &Edit) {
    let (names, store) = match e {
        Edit::Insert(s, ..) | Edit::Set(s, ..) | Edit::Delete(s, ..) => match s {
            Side::A => (["email", "name", "city"], &mut w.a),
            Side::B => (["email", "full_name", "town"], &mut w.b),
        },
    };
    match *e {
        Edit::Insert(_, em, n, c) => {
            // Keep keys unique per side so every record can be linked.
            let taken = store
                .rows
                .values()
                .any(|r| r.get("email") == Some(&Value::text(EMAILS[em as usize])));
            if !taken {
                store.insert(&[
                    (names[0], EMAILS[em as usize]),
                    (names[1], WORDS[n as usize]),
                    (names[2], WORDS[c as usize]),
                ]);
            }
        }
        Edit::Set(_, r, f, v) => {
            let ids: Vec<String> = store.rows.keys().cloned().collect();
            if !ids.is_empty() && f > 0 {
                let id = ids[r as usize % ids.len()].clone();
                store.set(&id, names[f as usize], WORDS[v as usize]);
            }
        }
        Edit::Delete(_, r) => {
            let ids: Vec<String> = store.rows.keys().cloned().collect();
            if !ids.is_empty() {
                let id = &ids[r as usize % ids.len()];
                store.rows.remove(id);
            }
        }
    }
}

fn assert_converged(w: &World) {
    for e in w.entries.values() {
        let (Some(a), Some(b)) = (&e.a_id, &e.b_id) else {
            continue;
        };
        if e.deleted_a || e.deleted_b || e.status != Status::InSync {
            continue;
        }
        for (fa, fb) in [("email", "email"), ("name", "full_name"), ("city", "town")] {
            let va = w.a.get(a, fa);
            let vb = w.b.get(b, fb);
            assert!(va.same(&vb), "{a}.{fa}={va:?} but {b}.{fb}={vb:?}");
        }
    }
}

proptest! {
    // PROPTEST_CASES=20000 for a longer search.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512)
    ))]
    #[test]
    fn runs_converge_and_then_write_nothing(
        rounds in prop::collection::vec(prop::collection::vec(edit(), 0..8), 1..5),
        winner_b in any::<bool>(),
        newest in any::<bool>(),
    ) {
        let mut spec = contacts_spec();
        spec.winner = if winner_b { Side::B } else { Side::A };
        if newest { spec.policy = ConflictPolicy::Newest; }
        let mut w = World::new(spec);
        for edits in &rounds {
            for e in edits { apply(&mut w, e); }
            w.run();
            assert_converged(&w);
            let (text, stats) = w.run();
            prop_assert_eq!(stats.writes, 0, "second run wrote:\n{}", text);
            // No side holds two records for one key that Puente created.
            for store in [&w.a, &w.b] {
                let mut keys: Vec<String> = store.rows.values()
                    .filter_map(|r| r.get("email").and_then(|v| v.to_text()))
                    .map(|s| s.to_lowercase()).collect();
                let n = keys.len();
                keys.sort(); keys.dedup();
                prop_assert_eq!(n, keys.len(), "duplicate created");
            }
        }
    }
}
