//! Turns a checked sync definition and the two discovered schemas into the
//! planner's `SyncSpec`, and finds what only the live schemas reveal:
//! missing fields, picklist drift, required fields nobody fills.

use puente_core::{FieldType, ObjectSchema, Side};
use puente_plan::{FieldMap, MatchKey, SyncSpec};

use crate::config::{Diagnostic, SyncDef};

/// The type a field gets: the config's `type` when given, else the
/// discovered one, with text columns named like e-mails or phones treated
/// as such (so invalid addresses fail instead of syncing).
fn field_type(
    discovered: Option<&FieldType>,
    declared: Option<&FieldType>,
    names: [&str; 2],
) -> FieldType {
    let base = discovered.cloned().unwrap_or_else(FieldType::text);
    let is_text = matches!(base, FieldType::Text { .. });
    match declared {
        Some(FieldType::Email) | Some(FieldType::Phone) if is_text => {
            declared.cloned().unwrap_or(base)
        }
        Some(FieldType::Enum { .. }) if is_text => base,
        Some(d) if is_text => d.clone(),
        Some(_) => base,
        None if is_text => {
            let n = format!("{} {}", names[0], names[1]).to_ascii_lowercase();
            if n.contains("email") || n.contains("e_mail") {
                FieldType::Email
            } else if n.contains("phone") || n.contains("mobile") {
                FieldType::Phone
            } else {
                base
            }
        }
        None => base,
    }
}

/// Builds the spec; returns it with the problems found (errors and warnings).
pub fn compile(
    def: &SyncDef,
    file: &str,
    sa: &ObjectSchema,
    sb: &ObjectSchema,
) -> (SyncSpec, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut diag = |line: usize, warning: bool, message: String, fix: Option<String>| {
        diags.push(Diagnostic {
            file: file.to_string(),
            line,
            message,
            fix,
            warning,
        })
    };
    for (side, schema, ep) in [(Side::A, sa, &def.a), (Side::B, sb, &def.b)] {
        if schema.absent {
            let columns: Vec<&str> = def.fields.iter().map(|f| f.name(side)).collect();
            diag(
                ep.line,
                true,
                format!(
                    "sync {}: {side} ({}) does not exist yet: the first pass creates it, with {}",
                    def.name,
                    ep.label(),
                    columns.join(", ")
                ),
                Some("if it should exist already, correct the object's name".to_string()),
            );
        }
    }
    let mut fields = Vec::new();
    for f in &def.fields {
        for (side, schema, name) in [(Side::A, sa, &f.a), (Side::B, sb, &f.b)] {
            if !schema.open && schema.field(name).is_none() {
                let names = schema.field_names();
                let meant = puente_core::config::did_you_mean(name, names.iter().copied())
                    .map(|m| format!("did you mean {m}? "))
                    .unwrap_or_default();
                diag(
                    f.line,
                    false,
                    format!(
                        "sync {}: {side} ({}) has no field {name}",
                        def.name, schema.name
                    ),
                    Some(format!("{meant}use one of: {}", names.join(", "))),
                );
            }
        }
        let ta = field_type(sa.field(&f.a).map(|x| &x.ty), f.ty.as_ref(), [&f.a, &f.b]);
        let tb = field_type(sb.field(&f.b).map(|x| &x.ty), f.ty.as_ref(), [&f.a, &f.b]);
        let mut fm = FieldMap::new(&f.a, &f.b);
        fm.ty_a = ta;
        fm.ty_b = tb;
        fm.direction = f.direction;
        fm.owner = f.owner;
        fm.values_a_to_b = f.values.clone();
        fm.values_b_to_a = f
            .values
            .iter()
            .map(|(k, v)| (v.clone(), k.clone()))
            .collect();
        fm.transform_a_to_b = f.a_to_b.clone();
        fm.transform_b_to_a = f.b_to_a.clone();
        fm.parent = f.parent.clone();
        if fm.parent.is_some() {
            // A reference carries ids: only its own type matters.
            fm.ty_a = sa
                .field(&f.a)
                .map(|x| x.ty.clone())
                .unwrap_or_else(FieldType::text);
            fm.ty_b = sb
                .field(&f.b)
                .map(|x| x.ty.clone())
                .unwrap_or_else(FieldType::text);
        }
        // Picklist drift, before any write: mapped values the target lacks,
        // and options of the source that no mapping covers.
        for (from, to, map, src_ty, dst_ty, flows) in [
            (
                Side::A,
                Side::B,
                &fm.values_a_to_b,
                &fm.ty_a,
                &fm.ty_b,
                def.direction.flows_from(Side::A) && f.direction.flows_from(Side::A),
            ),
            (
                Side::B,
                Side::A,
                &fm.values_b_to_a,
                &fm.ty_b,
                &fm.ty_a,
                def.direction.flows_from(Side::B) && f.direction.flows_from(Side::B),
            ),
        ] {
            if !flows {
                continue;
            }
            if let FieldType::Enum { options } = dst_ty {
                if !options.is_empty() {
                    let bad: Vec<&String> = map.values().filter(|v| !options.contains(v)).collect();
                    if !bad.is_empty() {
                        diag(
                            f.line,
                            false,
                            format!(
                                "sync {}: field {} maps to {} value(s) {:?} that {to}.{} does not offer (options: {})",
                                def.name,
                                fm.name(from),
                                bad.len(),
                                bad,
                                fm.name(to),
                                options.join(", ")
                            ),
                            Some(format!("map to one of {} or add the option on {to}", options.join(", "))),
                        );
                    }
                }
            }
            if let FieldType::Enum { options } = src_ty {
                let unmapped: Vec<&String> = if map.is_empty() {
                    match dst_ty {
                        FieldType::Enum { options: dst } if !dst.is_empty() => {
                            options.iter().filter(|o| !dst.contains(o)).collect()
                        }
                        _ => Vec::new(),
                    }
                } else {
                    options.iter().filter(|o| !map.contains_key(*o)).collect()
                };
                if !unmapped.is_empty() {
                    diag(
                        f.line,
                        true,
                        format!(
                            "sync {}: {from}.{} offers {:?} which has no mapping towards {to}.{}; records holding it will fail with category mapping",
                            def.name,
                            fm.name(from),
                            unmapped,
                            fm.name(to)
                        ),
                        Some(format!("add {} to the field's values", unmapped.iter().map(|u| format!("{u} = \"…\"")).collect::<Vec<_>>().join(", "))),
                    );
                }
            }
        }
        fields.push(fm);
    }
    let mut keys = Vec::new();
    for k in &def.keys {
        for (side, schema, name) in [(Side::A, sa, &k.a), (Side::B, sb, &k.b)] {
            if !schema.open && schema.field(name).is_none() {
                diag(
                    k.line,
                    false,
                    format!(
                        "sync {}: match key {side}.{name} is not a field of {}",
                        def.name, schema.name
                    ),
                    Some(format!("use one of: {}", schema.field_names().join(", "))),
                );
            }
        }
        keys.push(MatchKey {
            a: k.a.clone(),
            b: k.b.clone(),
            normalizer: k.normalizer,
        });
    }
    let required = |schema: &ObjectSchema| -> Vec<String> {
        schema
            .fields
            .iter()
            .filter(|f| f.required && !f.has_default && !f.read_only && f.name != schema.id_field)
            .map(|f| f.name.clone())
            .collect()
    };
    let required_a = required(sa);
    let required_b = required(sb);
    for (side, schema, req) in [(Side::A, sa, &required_a), (Side::B, sb, &required_b)] {
        for n in req.iter() {
            if !fields.iter().any(|fm| fm.name(side) == n) && def.direction.flows_from(side.other())
            {
                diag(
                    def.line,
                    true,
                    format!("sync {}: {side}.{n} is required on {} and no field maps to it; creates on {side} will fail", def.name, schema.name),
                    Some(format!("map a field to {n}, or give the column a default")),
                );
            }
        }
    }
    let mut spec = SyncSpec::new(&def.name, fields);
    spec.direction = def.direction;
    spec.winner = def.winner;
    spec.policy = def.policy;
    spec.keys = keys;
    spec.filter_a = def.a.filter.clone();
    spec.filter_b = def.b.filter.clone();
    spec.deletes = def.deletes;
    spec.phone_region = def.phone_region.clone();
    spec.required_a = required_a;
    spec.required_b = required_b;
    (spec, diags)
}
