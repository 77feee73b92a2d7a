//! Philo's stream jobs and the views they maintain.
//!
//! Jobs read the `actions` log, apply each action to their views in a [`store::StateStore`],
//! make the writes durable and only then commit their log position (DESIGN invariant 3).

pub mod aggregate;
pub mod job;
mod metrics;
pub mod read;
pub mod runtime;
pub mod shards;
pub mod social;
pub mod store;
pub mod workload;
