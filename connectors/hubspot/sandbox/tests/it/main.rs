mod legacy;
mod official_clients;
mod sandbox;
