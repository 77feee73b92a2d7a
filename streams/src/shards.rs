//! Which users' views an instance of a job holds, when several instances share the work as one
//! consumer group (ADR 009).
//!
//! Every instance reads every partition, in the job's global time order, and keeps the state
//! that decisions need — graph, content, blocks, counters, preferences — for everyone: it is a
//! deterministic function of the log, so every instance computes the same. The per-user views
//! that make up the bulk of the writes — home feeds, notifications, inboxes — are held only by
//! the instance whose consumer-group share includes the partition of that user (the partition
//! the user's own actions are appended to). Fan-out is thereby split across instances, and the
//! union of the instances' views equals the views of one process.
//!
//! A user's partition is the log's partition for the user id as key ([`partition_for_key`]),
//! so a user's feed lives with the consumer of that user's own actions.

use std::collections::BTreeSet;

use philo_events::log::partition_for_key;
use uuid::Uuid;

/// The partitions (of the `actions` topic) whose users' views an instance holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shards {
    owned: Vec<bool>,
    /// Every partition held (also for a count of 0: nothing is known to be elsewhere).
    all: bool,
}

impl Shards {
    /// Every partition: one instance holds every view.
    pub fn all(partitions: u32) -> Self {
        Self {
            owned: vec![true; partitions as usize],
            all: true,
        }
    }

    /// The given partitions of `partitions` (numbers beyond the count are ignored).
    pub fn of(partitions: u32, set: &BTreeSet<u32>) -> Self {
        let owned: Vec<bool> = (0..partitions).map(|p| set.contains(&p)).collect();
        Self {
            all: owned.iter().all(|o| *o),
            owned,
        }
    }

    /// Number of partitions of the topic.
    pub fn partitions(&self) -> u32 {
        self.owned.len() as u32
    }

    /// Whether every partition is held.
    pub fn is_all(&self) -> bool {
        self.all
    }

    /// Whether partition `p` is held.
    pub fn owns_partition(&self, p: u32) -> bool {
        self.owned.get(p as usize).copied().unwrap_or(false)
    }

    /// Whether `user`'s views are held.
    pub fn owns_user(&self, user: &Uuid) -> bool {
        self.all || self.owns_partition(Self::partition_of(user, self.partitions()))
    }

    /// The partition of `user` among `partitions`.
    pub fn partition_of(user: &Uuid, partitions: u32) -> u32 {
        partition_for_key(user.as_bytes(), partitions)
    }

    /// The held partitions.
    pub fn set(&self) -> BTreeSet<u32> {
        self.owned
            .iter()
            .enumerate()
            .filter(|(_, o)| **o)
            .map(|(p, _)| p as u32)
            .collect()
    }

    /// Stored form: the held partitions, u32 BE each.
    pub fn encode(&self) -> Vec<u8> {
        self.set().iter().flat_map(|p| p.to_be_bytes()).collect()
    }

    /// Inverse of [`Shards::encode`].
    pub fn decode(partitions: u32, bytes: &[u8]) -> Self {
        let set = bytes
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Self::of(partitions, &set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_places_users_like_the_log() {
        let s = Shards::of(8, &BTreeSet::from([1, 3, 6, 9]));
        assert_eq!(s.set(), BTreeSet::from([1, 3, 6]));
        assert_eq!(Shards::decode(8, &s.encode()), s);
        assert!(!s.is_all() && Shards::all(8).is_all());
        let users: Vec<Uuid> = (0..200).map(|_| Uuid::now_v7()).collect();
        let owned = users.iter().filter(|u| s.owns_user(u)).count();
        // 3 of 8 partitions: roughly 3/8 of the users, and exactly those the log places there.
        assert!((40..=110).contains(&owned), "{owned}");
        for u in &users {
            assert_eq!(
                s.owns_user(u),
                s.owns_partition(partition_for_key(u.as_bytes(), 8))
            );
        }
    }
}
