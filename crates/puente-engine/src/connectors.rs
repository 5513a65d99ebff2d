//! Every kind of connection Puente knows, in one list. Adding a kind is a
//! connector crate (its `config.rs` describes and checks its table) and one
//! line here; nothing else in the engine names a vendor.

use puente_core::config::ConnectorKind;

/// The connector kinds, in the order `validate` and the docs list them.
static KINDS: [&dyn ConnectorKind; 4] = [
    &puente_sql::KIND,
    &puente_file::KIND,
    &puente_webhook::KIND,
    &puente_hubspot::KIND,
];

pub fn kinds() -> &'static [&'static dyn ConnectorKind] {
    &KINDS
}

/// The kind that takes `kind = "name"`.
pub fn kind(name: &str) -> Option<&'static dyn ConnectorKind> {
    kinds().iter().copied().find(|k| k.names().contains(&name))
}

/// docs/config.md's section on connections, from the kinds themselves (a
/// test keeps the page equal to it).
pub fn reference() -> String {
    use puente_core::config::KeyType;
    let ty = |t: KeyType| match t {
        KeyType::Text => "text".to_string(),
        KeyType::Secret => "secret".to_string(),
        KeyType::Path => "path".to_string(),
        KeyType::Integer => "integer".to_string(),
        KeyType::Number => "number".to_string(),
        KeyType::Bool => "boolean".to_string(),
        KeyType::OneOf(options) => options
            .iter()
            .map(|o| format!("`{o}`"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let mut out = String::new();
    for k in kinds() {
        let names: Vec<String> = k.names().iter().map(|n| format!("`{n}`")).collect();
        out.push_str(&format!(
            "\n### kind {}\n\n{}.\n",
            names.join(", "),
            k.about()
        ));
        for (title, keys) in [("connection", k.keys()), ("endpoint", k.object_keys())] {
            if keys.is_empty() {
                continue;
            }
            out.push_str(&format!(
                "\n| {title} key | type | meaning |\n|---|---|---|\n"
            ));
            for key in keys {
                let required = if key.required { " (required)" } else { "" };
                out.push_str(&format!(
                    "| `{}`{required} | {} | {} |\n",
                    key.name,
                    ty(key.ty),
                    key.doc
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    /// docs/config.md holds the connection keys exactly as the kinds declare
    /// them, between its markers.
    #[test]
    fn the_config_reference_lists_every_key_of_every_kind() {
        let page = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md"),
        )
        .expect("docs/config.md");
        let (start, end) = (
            "<!-- kinds: begin (generated from each kind's keys) -->\n",
            "<!-- kinds: end -->",
        );
        let from = page.find(start).expect("the begin marker") + start.len();
        let to = page.find(end).expect("the end marker");
        let want = super::reference();
        assert!(
            page[from..to].trim() == want.trim(),
            "docs/config.md's connection keys differ from the kinds' own; put this between the markers:\n{want}"
        );
    }
}
