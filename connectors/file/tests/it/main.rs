//! The CSV connector on real files: the connector contract suite.

mod contract;
