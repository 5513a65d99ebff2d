use std::collections::BTreeMap;

use puente_core::{FailureCategory, FieldType, Side, Value};
use puente_plan::{ConflictPolicy, DeletePolicy, Direction, Expr, FieldMap, Resolution, Status};

use crate::harness::{contacts_spec, World};

fn check(actual: &str, expect: &str) {
    let norm = |s: &str| {
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(norm(actual), norm(expect), "\n--- actual ---\n{actual}");
}

#[test]
fn first_sync_links_matches_and_creates_the_rest() {
    let mut w = World::new(contacts_spec());
    w.a.insert(&[("email", "Ann@X.com"), ("name", "Ann"), ("city", "")]);
    w.a.insert(&[("email", "bob@x.com"), ("name", "Bob")]);
    w.b.insert(&[
        ("email", "ann@x.com "),
        ("full_name", "Annie"),
        ("town", "Oslo"),
    ]);
    w.b.insert(&[("email", "cid@x.com"), ("full_name", "Cid")]);
    let (text, stats) = w.run();
    check(
        &text,
        r#"
        update a:a1 (a:a1 ↔ b:b1): city: ∅ → "Oslo"
        update b:b1 (a:a1 ↔ b:b1): email: "ann@x.com " → "Ann@X.com", full_name: "Annie" → "Ann"
        conflict a:a1 ↔ b:b1 email/email: a="Ann@X.com" b="ann@x.com " → a wins
        conflict a:a1 ↔ b:b1 name/full_name: a="Ann" b="Annie" → a wins
        conflict a:a1 ↔ b:b1 city/town: a=∅ b="Oslo" → a wins
        create on b from a:a2: email="bob@x.com" full_name="Bob"
        create on a from b:b2: email="cid@x.com" name="Cid"
        "#,
    );
    assert_eq!(stats.writes, 4);
    assert_eq!(w.b.rows.len(), 3, "matched, not duplicated");
    let (text, stats) = w.run();
    assert_eq!(text, "", "a second run writes nothing");
    assert_eq!(stats.writes, 0);
    assert_eq!(
        stats.echoes, 4,
        "reads of our own writes are counted as echoes"
    );
}

#[test]
fn disjoint_edits_merge_and_same_field_goes_to_winner() {
    let mut w = World::new(contacts_spec());
    let a1 =
        w.a.insert(&[("email", "ann@x.com"), ("name", "Ann"), ("city", "Oslo")]);
    w.run();
    w.run();
    let b1 = w.partner(Side::A, &a1).unwrap();
    w.a.set(&a1, "name", "Ann Lee");
    w.b.set(&b1, "town", "Bergen");
    let (text, _) = w.run();
    check(
        &text,
        r#"
        update a:a1 (a:a1 ↔ b:b1): city: "Oslo" → "Bergen"
        update b:b1 (a:a1 ↔ b:b1): full_name: "Ann" → "Ann Lee"
        "#,
    );
    w.a.set(&a1, "name", "A from a");
    w.b.set(&b1, "full_name", "B from b");
    let (text, stats) = w.run();
    check(
        &text,
        r#"
        update b:b1 (a:a1 ↔ b:b1): full_name: "B from b" → "A from a"
        conflict a:a1 ↔ b:b1 name/full_name: a="A from a" b="B from b" → a wins
        "#,
    );
    assert_eq!(stats.conflicts, 1);
}

#[test]
fn an_empty_winner_value_never_overwrites() {
    let mut w = World::new(contacts_spec());
    let a1 =
        w.a.insert(&[("email", "ann@x.com"), ("name", "Ann"), ("city", "Oslo")]);
    w.run();
    w.run();
    let b1 = w.partner(Side::A, &a1).unwrap();
    w.a.set(&a1, "city", "");
    w.b.set(&b1, "town", "Bergen");
    let (text, _) = w.run();
    check(
        &text,
        r#"
        update a:a1 (a:a1 ↔ b:b1): city: ∅ → "Bergen"
        conflict a:a1 ↔ b:b1 city/town: a=∅ b="Bergen" → a wins
        "#,
    );
    assert_eq!(w.b.get(&b1, "town"), Value::text("Bergen"));
    // Clearing a field with no conflict does flow.
    w.a.set(&a1, "city", "");
    let (text, _) = w.run();
    check(&text, r#"update b:b1 (a:a1 ↔ b:b1): town: "Bergen" → ∅"#);
}

#[test]
fn both_sides_changing_to_the_same_value_writes_nothing() {
    let mut w = World::new(contacts_spec());
    let a1 = w.a.insert(&[("email", "ann@x.com"), ("name", "Ann")]);
    w.run();
    w.run();
    let b1 = w.partner(Side::A, &a1).unwrap();
    w.a.set(&a1, "name", "Ann Lee");
    w.b.set(&b1, "full_name", "Ann Lee");
    let (text, stats) = w.run();
    assert_eq!(text, "");
    assert_eq!(stats.conflicts, 0);
}

#[test]
fn a_rewriting_target_causes_no_echo() {
    let mut w = World::new(contacts_spec());
    w.b.lowercases = true;
    w.a.insert(&[("email", "Ann@X.com"), ("name", "Ann")]);
    w.run();
    let (text, stats) = w.run();
    assert_eq!(
        text, "",
        "b lower-cased the e-mail; that is not a change to send back"
    );
    assert_eq!(stats.echoes, 1);
}

#[test]
fn shared_keys_are_ambiguous_and_not_guessed() {
    let mut w = World::new(contacts_spec());
    w.a.insert(&[("email", "dup@x.com"), ("name", "One")]);
    w.a.insert(&[("email", "DUP@x.com"), ("name", "Two")]);
    w.b.insert(&[("email", "dup@x.com"), ("full_name", "Three")]);
    w.a.insert(&[("email", ""), ("name", "Nobody")]);
    let (text, _) = w.run();
    check(
        &text,
        r#"
        excluded a:a3: no match key: field email is empty on a
        excluded a:a1: ambiguous match key "dup@x.com": 2 records on a share it
        excluded a:a2: ambiguous match key "dup@x.com": 2 records on a share it
        excluded b:b1: ambiguous match key "dup@x.com": 2 records on a share it
        "#,
    );
    assert!(w.b.rows.len() == 1 && w.a.rows.len() == 3);
}

fn stage_spec() -> puente_plan::SyncSpec {
    let mut spec = contacts_spec();
    let mut stage = FieldMap::new("stage", "status");
    stage.ty_b = FieldType::Enum {
        options: vec!["L".into(), "C".into()],
    };
    stage.values_a_to_b =
        BTreeMap::from([("lead".into(), "L".into()), ("customer".into(), "C".into())]);
    stage.values_b_to_a =
        BTreeMap::from([("L".into(), "lead".into()), ("C".into(), "customer".into())]);
    spec.fields.push(stage);
    spec
}

#[test]
fn picklist_values_are_mapped_and_unknown_ones_fail_the_record_only() {
    let mut w = World::new(stage_spec());
    w.a.insert(&[("email", "ann@x.com"), ("stage", "lead")]);
    let bad = w.a.insert(&[("email", "bob@x.com"), ("stage", "gold")]);
    let (text, _) = w.run();
    check(
        &text,
        r#"
        create on b from a:a1: email="ann@x.com" status="L"
        failed a:a2: mapping: field stage: no value map entry for "gold" (towards b field status)
        "#,
    );
    let Status::Failed(f) = w.status_of(Side::A, &bad) else {
        panic!()
    };
    assert_eq!(f.category, FailureCategory::Mapping);
    assert!(f.hint.contains("add \"gold\""), "{}", f.hint);
    // Fixing the source value lets it through.
    w.a.set(&bad, "stage", "customer");
    let (text, _) = w.run();
    check(
        &text,
        r#"create on b from a:a2: email="bob@x.com" status="C""#,
    );
    assert_eq!(w.status_of(Side::A, &bad), Status::InSync);
}

#[test]
fn invalid_and_overlong_values_fail_with_the_field_named() {
    let mut spec = contacts_spec();
    spec.fields[0].ty_b = FieldType::Email;
    spec.fields[1].ty_b = FieldType::Text { max_len: Some(5) };
    let mut w = World::new(spec);
    w.a.insert(&[("email", "ann@x"), ("name", "Ann")]);
    w.a.insert(&[("email", "bob@x.com"), ("name", "Bartholomew")]);
    w.a.insert(&[("email", "cy@x.com"), ("name", "Cy")]);
    let (text, _) = w.run();
    check(
        &text,
        r#"
        failed a:a1: validation: field email: "ann@x" is not a valid e-mail address (from a field email)
        failed a:a2: validation: field full_name: value is 11 characters long, the target holds at most 5 (from a field name)
        create on b from a:a3: email="cy@x.com" full_name="Cy"
        "#,
    );
}

#[test]
fn one_way_fields_flow_one_way_only() {
    let mut spec = contacts_spec();
    spec.fields[2].direction = Direction::AToB;
    let mut w = World::new(spec);
    let a1 = w.a.insert(&[("email", "ann@x.com"), ("city", "Oslo")]);
    w.run();
    w.run();
    let b1 = w.partner(Side::A, &a1).unwrap();
    w.b.set(&b1, "town", "Bergen");
    let (text, _) = w.run();
    assert_eq!(text, "", "a change on b to an a-to-b field is ignored");
    w.a.set(&a1, "city", "Paris");
    w.b.set(&b1, "town", "Rome");
    let (text, _) = w.run();
    check(
        &text,
        r#"
        update b:b1 (a:a1 ↔ b:b1): town: "Rome" → "Paris"
        conflict a:a1 ↔ b:b1 city/town: a="Paris" b="Rome" → a wins
        "#,
    );
}

#[test]
fn per_field_owner_beats_the_default_winner() {
    let mut spec = contacts_spec();
    spec.fields[2].owner = Some(Side::B);
    let mut w = World::new(spec);
    let a1 = w.a.insert(&[("email", "ann@x.com"), ("city", "Oslo")]);
    w.run();
    w.run();
    let b1 = w.partner(Side::A, &a1).unwrap();
    w.a.set(&a1, "city", "Paris");
    w.b.set(&b1, "town", "Rome");
    let (text, _) = w.run();
    check(
        &text,
        r#"
        update a:a1 (a:a1 ↔ b:b1): city: "Paris" → "Rome"
        conflict a:a1 ↔ b:b1 city/town: a="Paris" b="Rome" → b wins
        "#,
    );
}

#[test]
fn manual_policy_holds_the_field_and_syncs_the_rest() {
    let mut spec = contacts_spec();
    spec.policy = ConflictPolicy::Manual;
    let mut w = World::new(spec);
    let a1 =
        w.a.insert(&[("email", "ann@x.com"), ("name", "Ann"), ("city", "Oslo")]);
    w.run();
    w.run();
    let b1 = w.partner(Side::A, &a1).unwrap();
    w.a.set(&a1, "city", "Paris");
    w.b.set(&b1, "town", "Rome");
    w.a.set(&a1, "name", "Ann Lee");
    let (text, _) = w.run();
    check(
        &text,
        r#"
        update b:b1 (a:a1 ↔ b:b1): full_name: "Ann" → "Ann Lee"
        conflict a:a1 ↔ b:b1 city/town: a="Paris" b="Rome" → held for a decision
        waiting a:a1 ↔ b:b1: conflict decision on field city
        "#,
    );
    // A person takes b's value.
    let e = w.entry_of(Side::A, &a1).clone();
    let mut e2 = e.clone();
    e2.resolutions
        .insert("city".into(), Resolution::Take(Side::B));
    w.entries.insert(e.id, e2);
    w.a.dirty.insert(a1.clone());
    let (text, _) = w.run();
    check(
        &text,
        r#"update a:a1 (a:a1 ↔ b:b1): city: "Paris" → "Rome""#,
    );
    assert_eq!(w.status_of(Side::A, &a1), Status::InSync);
    assert!(w.entry_of(Side::A, &a1).held.is_empty());
}

#[test]
fn newest_policy_uses_modification_times() {
    let mut spec = contacts_spec();
    spec.policy = ConflictPolicy::Newest;
    spec.winner = Side::A;
    let mut w = World::new(spec.clone());
    let a1 = w.a.insert(&[("email", "ann@x.com"), ("city", "Oslo")]);
    w.run();
    w.run();
    let b1 = w.partner(Side::A, &a1).unwrap();
    let e = w.entry_of(Side::A, &a1).clone();
    let mut ra = puente_core::Record::new(&a1)
        .with("email", "ann@x.com")
        .with("city", "Paris");
    ra.modified_at = Some("2026-01-01T10:00:00Z".parse().unwrap());
    let mut rb = puente_core::Record::new(&b1)
        .with("email", "ann@x.com")
        .with("town", "Rome");
    rb.modified_at = Some("2026-01-01T10:00:05Z".parse().unwrap());
    let p = puente_plan::plan(
        &spec,
        puente_plan::PlanInput {
            a: vec![ra],
            b: vec![rb],
            entries: &[e],
            refs: &w.refs,
        },
    );
    check(
        &puente_plan::render(&p),
        r#"
        update a:a1 (a:a1 ↔ b:b1): city: "Paris" → "Rome"
        conflict a:a1 ↔ b:b1 city/town: a="Paris" b="Rome" → b wins
        "#,
    );
}

#[test]
fn filters_limit_the_initial_sync_but_linked_records_keep_syncing() {
    let mut spec = stage_spec();
    spec.filter_a = Some(Expr::parse("stage != 'lost'").unwrap());
    spec.fields[3]
        .values_a_to_b
        .insert("lost".into(), "C".into());
    let mut w = World::new(spec);
    let a1 = w.a.insert(&[("email", "ann@x.com"), ("stage", "lead")]);
    w.a.insert(&[("email", "bob@x.com"), ("stage", "lost")]);
    w.b.insert(&[("email", "bob@x.com"), ("status", "C")]);
    let (text, _) = w.run();
    check(
        &text,
        r#"
        create on b from a:a1: email="ann@x.com" status="L"
        excluded a:a2: filter: a record does not satisfy "stage != 'lost'"
        excluded b:b1: matches a record a2 that the filter excludes
        "#,
    );
    w.run();
    w.a.set(&a1, "stage", "lost");
    let (text, _) = w.run();
    check(&text, r#"update b:b2 (a:a1 ↔ b:b2): status: "L" → "C""#);
}

#[test]
fn a_child_waits_for_its_parent() {
    let mut spec = contacts_spec();
    let mut company = FieldMap::new("company_id", "org_id");
    company.parent = Some("companies".into());
    company.ty_b = FieldType::Integer;
    spec.fields.push(company);
    let mut w = World::new(spec);
    let a1 = w.a.insert(&[("email", "ann@x.com"), ("company_id", "c7")]);
    let (text, _) = w.run();
    check(&text, "waiting a:a1: waiting on companies a:c7");
    assert!(w.b.rows.is_empty(), "not written without its link");
    w.refs
        .insert(("companies".into(), Side::A, "c7".into()), "70".into());
    w.a.dirty.insert(a1);
    let (text, _) = w.run();
    check(
        &text,
        r#"create on b from a:a1: email="ann@x.com" org_id="70""#,
    );
    assert_eq!(w.b.get("b1", "org_id"), Value::Int(70));
}

#[test]
fn deletes_are_kept_by_default_and_propagated_on_request() {
    let mut w = World::new(contacts_spec());
    let a1 = w.a.insert(&[("email", "ann@x.com"), ("name", "Ann")]);
    w.run();
    w.run();
    w.a.rows.remove(&a1);
    let (text, _) = w.run();
    check(&text, "deleted on a a:a1 ↔ b:b1");
    assert_eq!(w.b.rows.len(), 1, "keep leaves b alone");
    let e = w.entry_of(Side::A, &a1);
    assert_eq!(
        e.seen_a.as_ref().unwrap()["name"],
        Value::text("Ann"),
        "tombstone keeps the last values"
    );
    // b keeps changing: nothing flows to the deleted side.
    w.b.set("b1", "full_name", "Ann B");
    let (text, _) = w.run();
    assert_eq!(text, "");

    let mut spec = contacts_spec();
    spec.deletes = DeletePolicy::Propagate;
    let mut w = World::new(spec);
    let a1 = w.a.insert(&[("email", "ann@x.com"), ("name", "Ann")]);
    w.run();
    w.a.rows.remove(&a1);
    let (text, _) = w.run();
    check(&text, "delete b:b1 (a:a1 ↔ b:b1)\ndeleted on a a:a1 ↔ b:b1");
    assert!(w.b.rows.is_empty());
}

#[test]
fn required_fields_are_checked_before_a_create() {
    let mut spec = contacts_spec();
    spec.required_b = vec!["full_name".into()];
    let mut w = World::new(spec);
    w.a.insert(&[("email", "ann@x.com")]);
    let (text, _) = w.run();
    check(
        &text,
        "failed a:a1: validation: field full_name is required on b and a record a1 gives it no value",
    );
}

#[test]
fn one_way_syncs_create_only_downstream() {
    let mut spec = contacts_spec();
    spec.direction = Direction::AToB;
    let mut w = World::new(spec);
    w.a.insert(&[("email", "ann@x.com")]);
    w.b.insert(&[("email", "zed@x.com")]);
    let (text, _) = w.run();
    check(
        &text,
        r#"
        create on b from a:a1: email="ann@x.com"
        excluded b:b1: exists only on b; the sync is a-to-b so it is not created on a
        "#,
    );
    // A later a record with the same key links to the b-only record.
    w.a.insert(&[("email", "ZED@x.com"), ("name", "Zed")]);
    let (text, _) = w.run();
    check(
        &text,
        r#"
        update b:b1 (a:a2 ↔ b:b1): email: "zed@x.com" → "ZED@x.com", full_name: ∅ → "Zed"
        conflict a:a2 ↔ b:b1 email/email: a="ZED@x.com" b="zed@x.com" → a wins
        conflict a:a2 ↔ b:b1 name/full_name: a="Zed" b=∅ → a wins
        "#,
    );
}

#[test]
fn a_new_record_matching_a_tombstones_partner_merges_its_current_values() {
    // Found by the convergence property: a is deleted, its partner on b is
    // edited, then a new a record with the same key arrives. The merge must
    // use b's current values, not the seen values kept for a restore.
    let mut w = World::new(contacts_spec());
    let a1 = w.a.insert(&[("email", "di@x.com"), ("city", "Oslo")]);
    w.run();
    w.run();
    let b1 = w.partner(Side::A, &a1).unwrap();
    w.a.rows.remove(&a1);
    w.b.set(&b1, "town", "Rome");
    w.run();
    let a2 = w.a.insert(&[("email", "di@x.com"), ("city", "")]);
    w.run();
    assert_eq!(w.a.get(&a2, "city"), Value::text("Rome"));
    assert_eq!(
        w.partner(Side::A, &a2).as_deref(),
        Some(b1.as_str()),
        "relinked, not duplicated"
    );
    assert_eq!(w.b.rows.len(), 1);
}

/// A one-way target left unread stands in with its seen values; it may hold
/// something else by now, so a change carried to it is written even where
/// the seen value already agrees.
#[test]
fn a_change_reaches_a_side_stood_in_for_even_where_its_seen_value_agrees() {
    let mut spec = contacts_spec();
    spec.direction = Direction::AToB;
    let fields = |name: &str| -> puente_core::Fields {
        [
            ("email".to_string(), Value::text("ann@x.com")),
            ("name".to_string(), Value::text(name)),
        ]
        .into_iter()
        .collect()
    };
    let mut e = puente_plan::Entry::new(1);
    e.a_id = Some("a1".into());
    e.b_id = Some("b1".into());
    e.key_a = Some("ann@x.com".into());
    e.key_b = Some("ann@x.com".into());
    e.seen_a = Some(fields("Five"));
    // A full pass saw b's own edit to "Nine" (ignored: b does not flow).
    e.seen_b = Some(
        [
            ("email".to_string(), Value::text("ann@x.com")),
            ("full_name".to_string(), Value::text("Nine")),
        ]
        .into_iter()
        .collect(),
    );
    let mut a1 = puente_core::Record::new("a1");
    a1.fields = fields("Nine");
    let refs: std::collections::HashMap<(String, Side, String), String> = Default::default();
    let p = puente_plan::plan(
        &spec,
        puente_plan::PlanInput {
            a: vec![a1],
            b: vec![],
            entries: &[e],
            refs: &refs,
        },
    );
    let written = p.items.iter().find_map(|it| match it.write(Side::B) {
        Some(puente_plan::PlannedWrite::Update { changes, .. }) => Some(changes.clone()),
        _ => None,
    });
    let changes = written.expect("a's change is written to b");
    assert!(
        changes
            .iter()
            .any(|c| c.field == "full_name" && c.new.same(&Value::text("Nine"))),
        "{changes:?}"
    );
}
