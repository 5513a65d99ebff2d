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
