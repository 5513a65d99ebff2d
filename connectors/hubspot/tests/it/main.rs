mod connector;
mod contract;
