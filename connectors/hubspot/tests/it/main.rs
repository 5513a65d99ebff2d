mod connector;
mod official_clients;
mod sandbox;
