//! k-anonymity of the `users` dimension: every combination of its quasi-identifiers occurs at
//! least `k` times.
//!
//! Quasi-identifiers: the signup period, the role, whether a display name is set, the length
//! band of the profile description, and the skills (from resumes). The dimension is recomputed
//! over all users each time (global recoding), climbing one ladder until few enough users sit
//! in classes smaller than `k`:
//!
//! | level | signup | skills kept | description |
//! |---|---|---|---|
//! | 0 | month | those at least `k` users have, up to 5 per user | none / short / medium / long |
//! | 1 | quarter | the 20 most common (among those), up to 3 per user | none / some |
//! | 2 | year | none | none / some |
//! | 3 | year | none | (dropped) |
//!
//! At the first level where at most [`MAX_SUPPRESSED`] of the users fall in classes smaller than
//! `k` (or at the last level), the users still in such classes are **suppressed**: left out of
//! the dimension altogether (their fact rows stay, without attributes to join). Suppressing
//! rows rather than nulling their attributes keeps the invariant exact: a class of nulled
//! attributes could itself be smaller than `k`.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Utc};
use uuid::Uuid;

/// Most of the users a level may suppress before the next level is tried.
pub const MAX_SUPPRESSED: f64 = 0.05;

/// What the lake knows of a user before generalisation.
#[derive(Debug, Clone, PartialEq)]
pub struct UserFacts {
    pub user: Uuid,
    pub signed_up: DateTime<Utc>,
    pub role: String,
    pub has_display_name: bool,
    /// Characters of the profile description (0: none).
    pub description_chars: usize,
    pub skills: Vec<String>,
}

/// One row of the `users` dimension: the quasi-identifiers as generalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserRow {
    pub user: Uuid,
    /// `2026-11`, `2026-Q4` or `2026`.
    pub signup_period: String,
    pub role: String,
    pub has_display_name: bool,
    /// `none`, `short`, `medium`, `long`, `some`, or `None` when dropped.
    pub description: Option<String>,
    /// Sorted.
    pub skills: Vec<String>,
}

impl UserRow {
    /// The quasi-identifiers: what must occur `k` times.
    pub fn class(&self) -> (String, String, bool, Option<String>, Vec<String>) {
        (
            self.signup_period.clone(),
            self.role.clone(),
            self.has_display_name,
            self.description.clone(),
            self.skills.clone(),
        )
    }
}

/// The generalised dimension and what it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Dimension {
    pub rows: Vec<UserRow>,
    /// Ladder level used (0–3).
    pub level: usize,
    /// Users left out.
    pub suppressed: usize,
}

/// Generalises `users` so every quasi-identifier combination occurs at least `k` times.
pub fn generalise(users: &[UserFacts], k: usize) -> Dimension {
    let k = k.max(1);
    let mut skill_users: HashMap<&str, usize> = HashMap::new();
    for u in users {
        for s in u.skills.iter().collect::<BTreeSet<_>>() {
            *skill_users.entry(s.as_str()).or_default() += 1;
        }
    }
    let mut common: Vec<(&str, usize)> = skill_users.into_iter().filter(|(_, n)| *n >= k).collect();
    common.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    // Most widely held first.
    let kept0: Vec<&str> = common.iter().map(|(s, _)| *s).collect();
    let kept1: Vec<&str> = common.iter().take(20).map(|(s, _)| *s).collect();

    let mut best = None;
    for level in 0..=3 {
        let kept = match level {
            0 => Some((&kept0, 5)),
            1 => Some((&kept1, 3)),
            _ => None,
        };
        let rows: Vec<UserRow> = users.iter().map(|u| row(u, level, kept)).collect();
        let mut sizes: HashMap<_, usize> = HashMap::new();
        for r in &rows {
            *sizes.entry(r.class()).or_default() += 1;
        }
        let small = rows.iter().filter(|r| sizes[&r.class()] < k).count();
        let done = small as f64 <= MAX_SUPPRESSED * users.len() as f64 || level == 3;
        if done {
            let rows: Vec<UserRow> = rows
                .into_iter()
                .filter(|r| sizes[&r.class()] >= k)
                .collect();
            best = Some(Dimension {
                suppressed: users.len() - rows.len(),
                rows,
                level,
            });
            break;
        }
    }
    best.expect("level 3 always ends the ladder")
}

fn row(u: &UserFacts, level: usize, kept: Option<(&Vec<&str>, usize)>) -> UserRow {
    let d = u.signed_up;
    let signup_period = match level {
        0 => format!("{}-{:02}", d.year(), d.month()),
        1 => format!("{}-Q{}", d.year(), (d.month() - 1) / 3 + 1),
        _ => d.year().to_string(),
    };
    let description = match (level, u.description_chars) {
        (3, _) => None,
        (_, 0) => Some("none".to_owned()),
        (0, n) if n <= 140 => Some("short".to_owned()),
        (0, n) if n <= 800 => Some("medium".to_owned()),
        (0, _) => Some("long".to_owned()),
        _ => Some("some".to_owned()),
    };
    let skills = match kept {
        Some((kept, most)) => {
            // The user's most widely held skills, so rare combinations generalise first.
            let mut mine: Vec<String> = kept
                .iter()
                .filter(|s| u.skills.iter().any(|m| m == *s))
                .take(most)
                .map(|s| (*s).to_owned())
                .collect();
            mine.sort();
            mine
        }
        None => Vec::new(),
    };
    UserRow {
        user: u.user,
        signup_period,
        role: u.role.clone(),
        has_display_name: u.has_display_name && level < 3,
        description,
        skills,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn facts(i: u128, month: u32, role: &str, desc: usize, skills: &[&str]) -> UserFacts {
        UserFacts {
            user: Uuid::from_u128(i),
            signed_up: Utc.with_ymd_and_hms(2026, month, 3, 10, 0, 0).unwrap(),
            role: role.into(),
            has_display_name: i.is_multiple_of(2),
            description_chars: desc,
            skills: skills.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn assert_k_anonymous(d: &Dimension, k: usize) {
        let mut sizes: HashMap<_, usize> = HashMap::new();
        for r in &d.rows {
            *sizes.entry(r.class()).or_default() += 1;
        }
        for (class, n) in sizes {
            assert!(n >= k, "{class:?} occurs {n} < {k} times");
        }
    }

    #[test]
    fn a_population_that_is_already_anonymous_keeps_level_0() {
        let users: Vec<_> = (0..20)
            .map(|i| facts(i, 5, "user", 0, &["pricing"]))
            .collect();
        let d = generalise(&users, 5);
        assert_eq!((d.level, d.suppressed), (0, 0));
        assert_eq!(d.rows[0].signup_period, "2026-05");
        assert_eq!(d.rows[0].skills, ["pricing"]);
        assert_k_anonymous(&d, 5);
    }

    #[test]
    fn rare_combinations_climb_the_ladder_then_the_rest_is_suppressed() {
        // Each user signs up in their own month: months must generalise.
        let mut users: Vec<_> = (0..24)
            .map(|i| facts(i, (i % 12) as u32 + 1, "user", 10, &["sales"]))
            .collect();
        // One procurer: unique whatever the level, so suppressed.
        users.push(facts(100, 1, "procurer", 0, &[]));
        let d = generalise(&users, 5);
        assert!(d.level >= 1, "{d:?}");
        assert_eq!(d.suppressed, 1);
        assert!(d.rows.iter().all(|r| r.role == "user"));
        assert_k_anonymous(&d, 5);
    }

    #[test]
    fn skills_held_by_fewer_than_k_users_never_appear() {
        let mut users: Vec<_> = (0..10).map(|i| facts(i, 2, "user", 0, &["rust"])).collect();
        users.push(facts(50, 2, "user", 0, &["rust", "quantum-origami"]));
        let d = generalise(&users, 5);
        assert!(
            d.rows
                .iter()
                .all(|r| !r.skills.iter().any(|s| s == "quantum-origami"))
        );
        assert_eq!(d.suppressed, 0, "without the rare skill the user blends in");
        assert_k_anonymous(&d, 5);
    }

    proptest! {
        #[test]
        fn every_class_has_at_least_k_members(
            k in 1usize..8,
            people in proptest::collection::vec(
                (1u32..13, 0usize..3, 0usize..1200, proptest::collection::vec(0usize..8, 0..4)),
                0..200,
            ),
        ) {
            let roles = ["user", "procurer", "admin"];
            let skill_names = ["a", "b", "c", "d", "e", "f", "g", "h"];
            let users: Vec<UserFacts> = people
                .iter()
                .enumerate()
                .map(|(i, (month, role, desc, skills))| {
                    let s: Vec<&str> = skills.iter().map(|s| skill_names[*s]).collect();
                    facts(i as u128, *month, roles[*role], *desc, &s)
                })
                .collect();
            let d = generalise(&users, k);
            assert_k_anonymous(&d, k);
            prop_assert_eq!(d.rows.len() + d.suppressed, users.len());
            if d.level < 3 {
                prop_assert!(d.suppressed as f64 <= MAX_SUPPRESSED * users.len() as f64);
            }
        }
    }
}
