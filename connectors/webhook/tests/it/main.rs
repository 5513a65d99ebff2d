//! The JSON webhook inbox on real files: the connector contract suite.

mod contract;
