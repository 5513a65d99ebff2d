use std::collections::BTreeMap;

use puente_core::normalize::KeyNormalizer;
use puente_core::{FieldType, Side};

use crate::Expr;

/// Which way data may flow, for a whole sync or one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    TwoWay,
    AToB,
    BToA,
}

impl Direction {
    pub fn parse(s: &str) -> Option<Direction> {
        Some(match s {
            "two-way" => Direction::TwoWay,
            "a-to-b" => Direction::AToB,
            "b-to-a" => Direction::BToA,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::TwoWay => "two-way",
            Direction::AToB => "a-to-b",
            Direction::BToA => "b-to-a",
        }
    }

    /// Whether data may flow from `from` to the other side.
    pub fn flows_from(self, from: Side) -> bool {
        match self {
            Direction::TwoWay => true,
            Direction::AToB => from == Side::A,
            Direction::BToA => from == Side::B,
        }
    }
}

/// How a field changed on both sides since the last sync is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConflictPolicy {
    /// The sync's default winner side wins.
    Winner,
    /// The side whose record was modified last wins; ties go to the winner.
    Newest,
    /// The field is held and the conflict waits in the inbox for a person.
    Manual,
}

impl ConflictPolicy {
    pub fn parse(s: &str) -> Option<ConflictPolicy> {
        Some(match s {
            "winner" => ConflictPolicy::Winner,
            "newest" => ConflictPolicy::Newest,
            "manual" => ConflictPolicy::Manual,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletePolicy {
    /// The other side is left alone; the record shows as deleted and can be restored.
    Keep,
    /// The record is deleted on the other side too.
    Propagate,
}

/// One mapped field pair.
#[derive(Clone, Debug)]
pub struct FieldMap {
    pub a: String,
    pub b: String,
    pub ty_a: FieldType,
    pub ty_b: FieldType,
    pub direction: Direction,
    /// The system of record for this field: wins its conflicts.
    pub owner: Option<Side>,
    /// Picklist value map, A's value → B's value (and its inverse).
    pub values_a_to_b: BTreeMap<String, String>,
    pub values_b_to_a: BTreeMap<String, String>,
    pub transform_a_to_b: Option<Expr>,
    pub transform_b_to_a: Option<Expr>,
    /// The field references a record of this (parent) sync.
    pub parent: Option<String>,
}

impl FieldMap {
    pub fn new(a: &str, b: &str) -> FieldMap {
        FieldMap {
            a: a.to_string(),
            b: b.to_string(),
            ty_a: FieldType::text(),
            ty_b: FieldType::text(),
            direction: Direction::TwoWay,
            owner: None,
            values_a_to_b: BTreeMap::new(),
            values_b_to_a: BTreeMap::new(),
            transform_a_to_b: None,
            transform_b_to_a: None,
            parent: None,
        }
    }

    pub fn name(&self, side: Side) -> &str {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    pub fn ty(&self, side: Side) -> &FieldType {
        match side {
            Side::A => &self.ty_a,
            Side::B => &self.ty_b,
        }
    }
}

/// A pair of fields whose normalised values identify the same record.
#[derive(Clone, Debug)]
pub struct MatchKey {
    pub a: String,
    pub b: String,
    pub normalizer: KeyNormalizer,
}

/// A sync, compiled and checked: what the planner needs, nothing more.
#[derive(Clone, Debug)]
pub struct SyncSpec {
    pub name: String,
    pub direction: Direction,
    pub winner: Side,
    pub policy: ConflictPolicy,
    pub fields: Vec<FieldMap>,
    pub keys: Vec<MatchKey>,
    pub filter_a: Option<Expr>,
    pub filter_b: Option<Expr>,
    pub deletes: DeletePolicy,
    pub phone_region: Option<String>,
    /// Fields a create on that side must set (required, no default).
    pub required_a: Vec<String>,
    pub required_b: Vec<String>,
}

impl SyncSpec {
    pub fn new(name: &str, fields: Vec<FieldMap>) -> SyncSpec {
        SyncSpec {
            name: name.to_string(),
            direction: Direction::TwoWay,
            winner: Side::A,
            policy: ConflictPolicy::Winner,
            fields,
            keys: Vec::new(),
            filter_a: None,
            filter_b: None,
            deletes: DeletePolicy::Keep,
            phone_region: None,
            required_a: Vec::new(),
            required_b: Vec::new(),
        }
    }

    /// Whether a field may flow from `from`: the sync's direction and the
    /// field's own must both allow it.
    pub fn field_flows(&self, fm: &FieldMap, from: Side) -> bool {
        self.direction.flows_from(from) && fm.direction.flows_from(from)
    }

    pub fn filter(&self, side: Side) -> Option<&Expr> {
        match side {
            Side::A => self.filter_a.as_ref(),
            Side::B => self.filter_b.as_ref(),
        }
    }

    pub fn required(&self, side: Side) -> &[String] {
        match side {
            Side::A => &self.required_a,
            Side::B => &self.required_b,
        }
    }
}
