//! Planner behaviour: fixtures rendered as text, scenarios run through an
//! in-memory pair of stores, and a convergence property.

mod harness;
mod property;
mod scenarios;
