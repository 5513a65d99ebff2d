mod official_clients;
mod sandbox;
