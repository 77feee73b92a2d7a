//! Integration tests for `philo-streams`.
mod commit;
mod determinism;
mod follower_lists;
mod golden;
mod notifications;
mod shards;
mod social;
mod staged;
mod store_contract;
mod store_embedded;
mod store_resident;
mod trims;
mod world;
