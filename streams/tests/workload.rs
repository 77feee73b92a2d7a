//! The workload generator: deterministic, valid, every reference resolvable, shaped as configured.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use philo_events::action::{ReactionKind, UserRole};
use philo_events::{Action, ActionKind, Envelope};
use philo_streams::workload::{Mix, Workload, WorkloadConfig};
use uuid::Uuid;

#[test]
fn same_seed_same_sequence_other_seed_other_sequence() {
    let a: Vec<Envelope> = Workload::new(WorkloadConfig::small(7)).collect();
    let b: Vec<Envelope> = Workload::new(WorkloadConfig::small(7)).collect();
    assert_eq!(a, b);
    let c: Vec<Envelope> = Workload::new(WorkloadConfig::small(8)).collect();
    assert_ne!(a, c);
}

#[test]
fn every_action_is_valid_and_resolvable() {
    for seed in [1, 2, 3] {
        let config = WorkloadConfig::small(seed);
        let mut workload = Workload::new(config.clone());
        let (users, follows) = (config.users, workload.initial_follows());
        assert_eq!(workload.len(), users + follows + config.actions);
        let mut model = Model::default();
        let mut ids = HashSet::new();
        let mut at = config.start;
        let (mut n, mut last_id) = (0, Uuid::nil());
        for env in workload.by_ref() {
            let decoded = Envelope::from_json(&env.to_json()).expect("decodes");
            assert_eq!(decoded, env);
            let kind = env.action.kind();
            if let Err(e) = decoded.action.validate(decoded.received_at) {
                panic!("seed {seed} #{n} {kind}: {e}");
            }
            assert_eq!(env.received_at, at, "#{n}");
            assert_eq!(env.schema_version, kind.schema_version());
            let (secs, nanos) = env.id.get_timestamp().expect("a v7 id").to_unix();
            let millis = secs as i64 * 1_000 + i64::from(nanos / 1_000_000);
            assert_eq!(millis, at.timestamp_millis(), "#{n}: id from received_at");
            assert!(env.id > last_id, "#{n}: ids sort by time");
            last_id = env.id;
            assert!(ids.insert(env.id), "#{n}: duplicate id");
            let phase = match n {
                n if n < users => ActionKind::UserRegistered,
                n if n < users + follows => ActionKind::FollowCreated,
                _ => kind,
            };
            assert_eq!(
                kind, phase,
                "#{n}: registrations, then follows, then the mix"
            );
            if let Err(e) = model.apply(&env) {
                panic!("seed {seed} #{n} {kind}: {e}");
            }
            at += config.step;
            n += 1;
        }
        assert_eq!(n, users + follows + config.actions);
        assert_eq!(workload.len(), 0);
        assert_eq!(workload.stats().total(), n as u64);
        assert_eq!(model.ids_of_users, workload.users());
        assert!(model.mentions > 0, "some texts mention users");
    }
}

#[test]
fn the_follow_graph_has_celebrities_and_a_long_tail() {
    let config = WorkloadConfig::small(11);
    let workload = Workload::new(config.clone());
    let celebrities: Vec<Uuid> = workload.celebrities().to_vec();
    assert_eq!(celebrities.len(), 2);
    let setup = config.users + workload.initial_follows();
    let mut followers: HashMap<Uuid, usize> = HashMap::new();
    let mut edges = HashSet::new();
    for env in workload.take(setup).skip(config.users) {
        let Action::FollowCreated(f) = &env.action else {
            panic!("not a follow: {:?}", env.action)
        };
        assert_ne!(f.user_id, env.actor_id, "no self-follows");
        assert!(
            edges.insert((env.actor_id, f.user_id)),
            "no duplicate edges"
        );
        *followers.entry(f.user_id).or_default() += 1;
    }
    for c in &celebrities {
        assert!(
            followers[c] >= config.celebrity_followers,
            "{}",
            followers[c]
        );
    }
    let mean = edges.len() as f64 / config.users as f64;
    let expected = config.mean_following as f64 + 2.0 * 200.0 / 500.0;
    assert!((mean - expected).abs() < 3.0, "mean following {mean}");
    // Skewed: the most followed non-celebrity has far more followers than the median user.
    let mut counts: Vec<usize> = followers
        .iter()
        .filter(|(u, _)| !celebrities.contains(u))
        .map(|(_, n)| *n)
        .collect();
    counts.sort_unstable();
    let (median, top) = (counts[counts.len() / 2], counts[counts.len() - 1]);
    assert!(top >= 5 * median.max(1), "top {top}, median {median}");
}

#[test]
fn a_post_burst_comes_from_the_most_followed_authors_below_the_bound() {
    let config = WorkloadConfig::small(5);
    let mut workload = Workload::new(config.clone());
    let mut followers: HashMap<Uuid, HashSet<Uuid>> = HashMap::new();
    let (mut last_id, mut last_at) = (Uuid::nil(), config.start);
    for env in workload.by_ref() {
        match &env.action {
            Action::FollowCreated(f) => {
                followers.entry(f.user_id).or_default().insert(env.actor_id);
            }
            Action::FollowRemoved(f) => {
                followers
                    .entry(f.user_id)
                    .or_default()
                    .remove(&env.actor_id);
            }
            Action::AccountErased(_) => panic!("the mix erases nobody"),
            _ => {}
        }
        (last_id, last_at) = (env.id, env.received_at);
    }
    let count = |u: &Uuid| followers.get(u).map_or(0, HashSet::len);
    // Below the celebrities' count: the celebrities are left out.
    let below = config.celebrity_followers;
    let burst = workload.post_burst(30, 4, below);
    assert_eq!(burst.len(), 30);
    let authors: Vec<Uuid> = burst[..4].iter().map(|e| e.actor_id).collect();
    let distinct: HashSet<&Uuid> = authors.iter().collect();
    assert_eq!(distinct.len(), 4, "four authors in turn: {authors:?}");
    let weakest = authors.iter().map(count).min().unwrap();
    assert!(authors.iter().all(|a| count(a) < below));
    // Nobody left out (a social user under the bound) has more followers than the weakest one.
    for u in workload.users() {
        if !authors.contains(u) && count(u) < below && count(u) > weakest {
            let role = workload.roles()[workload.users().iter().position(|x| x == u).unwrap()];
            assert_eq!(role, UserRole::Procurer, "{u} has {} followers", count(u));
        }
    }
    for (i, env) in burst.iter().enumerate() {
        assert!(matches!(env.action, Action::PostCreated(_)));
        assert_eq!(env.actor_id, authors[i % 4]);
        env.action.validate(env.received_at).expect("valid");
        assert!(
            env.id > last_id && env.received_at > last_at,
            "after the stream"
        );
        (last_id, last_at) = (env.id, env.received_at);
    }
    assert!(workload.post_burst(3, 4, 0).is_empty(), "nobody has < 0");
}

#[test]
fn a_20k_run_shows_every_kind_of_the_mix() {
    let config = WorkloadConfig {
        actions: 20_000,
        ..WorkloadConfig::small(5)
    };
    let mut workload = Workload::new(config.clone());
    let mut actors: HashMap<Uuid, usize> = HashMap::new();
    let skip = config.users + workload.initial_follows();
    for env in workload.by_ref().skip(skip) {
        *actors.entry(env.actor_id).or_default() += 1;
    }
    let stats = workload.stats();
    for (kind, weight) in Mix::default().weights() {
        assert!(weight > 0);
        assert!(stats.count(kind) > 0, "{kind} never appeared:\n{stats}");
    }
    assert_eq!(stats.count(ActionKind::UserRegistered), config.users as u64);
    assert!(stats.redraws() < 2_000, "{} redraws", stats.redraws());
    // Activity is skewed: the busiest actor does far more than the median one.
    let mut per_actor: Vec<usize> = actors.into_values().collect();
    per_actor.sort_unstable();
    let (median, top) = (
        per_actor[per_actor.len() / 2],
        per_actor[per_actor.len() - 1],
    );
    assert!(top >= 10 * median, "top {top}, median {median}");
}

#[test]
fn a_zero_weight_turns_a_kind_off_and_scaling_keeps_the_shape() {
    let config = WorkloadConfig {
        mix: Mix {
            reactions_added: 0,
            explore_views: 0,
            ..Mix::default()
        },
        ..WorkloadConfig::small(3)
    };
    let mut workload = Workload::new(config);
    workload.by_ref().for_each(drop);
    assert_eq!(workload.stats().count(ActionKind::ReactionAdded), 0);
    assert_eq!(workload.stats().count(ActionKind::ExploreViewed), 0);
    assert!(workload.stats().count(ActionKind::PostCreated) > 0);

    let scaled = WorkloadConfig::scaled(1, 10_000, 10);
    assert_eq!((scaled.celebrities, scaled.celebrity_followers), (5, 5_000));
    let default = WorkloadConfig::default();
    assert_eq!(
        (default.users, default.celebrity_followers),
        (100_000, 50_000)
    );
    let workload = Workload::new(scaled);
    assert_eq!(workload.usernames().len(), 10_000);
    let unique: HashSet<String> = workload
        .usernames()
        .iter()
        .map(|u| u.to_lowercase())
        .collect();
    assert_eq!(unique.len(), 10_000);
    let users = workload.roles().iter().filter(|r| **r == UserRole::User);
    assert!(users.count() > 9_900, "roles are mostly `user`");
}

#[test]
fn tiny_worlds_still_work() {
    for users in [2, 3, 5, 40] {
        let config = WorkloadConfig::scaled(users as u64, users, 3_000);
        let mut model = Model::default();
        for (n, env) in Workload::new(config).enumerate() {
            env.action.validate(env.received_at).expect("valid");
            if let Err(e) = model.apply(&env) {
                panic!("{users} users, #{n} {}: {e}", env.action.kind());
            }
        }
    }
    let none = WorkloadConfig {
        mix: zero_mix(),
        ..WorkloadConfig::small(1)
    };
    let mut workload = Workload::new(none);
    workload.by_ref().for_each(drop);
    assert_eq!(
        workload.stats().count(ActionKind::PostCreated),
        5_000,
        "all-zero mix: posts"
    );
}

fn zero_mix() -> Mix {
    Mix {
        posts: 0,
        post_edits: 0,
        post_deletes: 0,
        approaches: 0,
        approach_edits: 0,
        approach_deletes: 0,
        comments: 0,
        comment_deletes: 0,
        reactions_added: 0,
        reactions_removed: 0,
        follows: 0,
        unfollows: 0,
        blocks: 0,
        unblocks: 0,
        donations: 0,
        campaigns_created: 0,
        campaigns_closed: 0,
        events_created: 0,
        events_updated: 0,
        events_cancelled: 0,
        event_rsvps: 0,
        job_offers_created: 0,
        job_offers_answered: 0,
        job_offers_withdrawn: 0,
        profile_updates: 0,
        resume_updates: 0,
        explore_views: 0,
        explore_clicks: 0,
        explore_dismissals: 0,
    }
}

/// An independent model of what exists, checking every reference against it.
#[derive(Default)]
struct Model {
    ids_of_users: Vec<Uuid>,
    roles: HashMap<Uuid, UserRole>,
    usernames: HashSet<String>,
    follows: HashSet<(Uuid, Uuid)>,
    blocks: HashSet<(Uuid, Uuid)>,
    /// id → (author, alive)
    posts: HashMap<Uuid, (Uuid, bool)>,
    /// id → (author, post, alive)
    approaches: HashMap<Uuid, (Uuid, Option<Uuid>, bool)>,
    /// id → (author, target, alive)
    comments: HashMap<Uuid, (Uuid, Uuid, bool)>,
    reactions: HashSet<(Uuid, Uuid, ReactionKind)>,
    /// id → (owner, starts_at, ends_at, cancelled)
    events: HashMap<Uuid, (Uuid, DateTime<Utc>, DateTime<Utc>, bool)>,
    /// id → (owner, target, ends_at, closed)
    campaigns: HashMap<Uuid, (Uuid, Uuid, DateTime<Utc>, bool)>,
    /// id → (sender, recipient, open)
    offers: HashMap<Uuid, (Uuid, Option<Uuid>, bool)>,
    mentions: usize,
}

type Check = Result<(), String>;

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Check {
    if ok { Ok(()) } else { Err(why()) }
}

impl Model {
    fn post_alive(&self, id: &Uuid) -> bool {
        self.posts.get(id).is_some_and(|p| p.1)
    }

    fn approach_alive(&self, id: &Uuid) -> bool {
        self.approaches
            .get(id)
            .is_some_and(|a| a.2 && a.1.is_none_or(|p| self.post_alive(&p)))
    }

    fn comment_alive(&self, id: &Uuid) -> bool {
        self.comments
            .get(id)
            .is_some_and(|c| c.2 && (self.post_alive(&c.1) || self.approach_alive(&c.1)))
    }

    fn event_alive(&self, id: &Uuid) -> bool {
        self.events.get(id).is_some_and(|e| !e.3)
    }

    /// The owner of a live post, approach, comment or event.
    fn owner(&self, id: &Uuid) -> Option<Uuid> {
        if self.post_alive(id) {
            Some(self.posts[id].0)
        } else if self.approach_alive(id) {
            Some(self.approaches[id].0)
        } else if self.comment_alive(id) {
            Some(self.comments[id].0)
        } else if self.event_alive(id) {
            Some(self.events[id].0)
        } else {
            None
        }
    }

    fn blocked(&self, a: Uuid, b: Uuid) -> bool {
        self.blocks.contains(&(a, b)) || self.blocks.contains(&(b, a))
    }

    fn user(&self, id: &Uuid) -> Check {
        ensure(self.roles.contains_key(id), || format!("unknown user {id}"))
    }

    fn mentions_resolve(&mut self, text: &str) -> Check {
        for (i, _) in text.match_indices('@') {
            let name: String = text[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            ensure(self.usernames.contains(&name), || {
                format!("mention @{name}")
            })?;
            let after = text[i + 1 + name.len()..].chars().next();
            ensure(after.is_none_or(|c| c == ' '), || {
                format!("@{name} then {after:?}")
            })?;
            self.mentions += 1;
        }
        Ok(())
    }

    fn apply(&mut self, env: &Envelope) -> Check {
        let (id, actor, now) = (env.id, env.actor_id, env.received_at);
        if let Action::UserRegistered(r) = &env.action {
            let name = &r.username;
            let accounts_ok = name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            ensure(accounts_ok, || format!("username {name}"))?;
            ensure(self.usernames.insert(name.clone()), || {
                format!("dup {name}")
            })?;
            ensure(self.roles.insert(actor, r.role).is_none(), || {
                "re-registered".into()
            })?;
            self.ids_of_users.push(actor);
            return Ok(());
        }
        self.user(&actor)?;
        ensure(self.roles[&actor] != UserRole::Procurer, || {
            "a procurer acts".into()
        })?;
        match &env.action {
            Action::PostCreated(p) => {
                self.mentions_resolve(&p.body)?;
                self.posts.insert(id, (actor, true));
            }
            Action::PostEdited(p) => {
                ensure(self.post_alive(&p.post_id), || "edits a dead post".into())?;
                ensure(self.posts[&p.post_id].0 == actor, || {
                    "not the author".into()
                })?;
            }
            Action::PostDeleted(p) => {
                ensure(self.post_alive(&p.post_id), || "deletes a dead post".into())?;
                let post = self.posts.get_mut(&p.post_id).unwrap();
                ensure(post.0 == actor, || "not the author".into())?;
                post.1 = false;
            }
            Action::ApproachCreated(a) => {
                let ok = a.post_id.is_none_or(|p| self.post_alive(&p));
                ensure(ok, || "approach on a dead post".into())?;
                self.approaches.insert(id, (actor, a.post_id, true));
            }
            Action::ApproachEdited(a) => {
                ensure(self.approach_alive(&a.approach_id), || {
                    "dead approach".into()
                })?;
                ensure(self.approaches[&a.approach_id].0 == actor, || {
                    "not the author".into()
                })?;
            }
            Action::ApproachDeleted(a) => {
                ensure(self.approach_alive(&a.approach_id), || {
                    "dead approach".into()
                })?;
                let approach = self.approaches.get_mut(&a.approach_id).unwrap();
                ensure(approach.0 == actor, || "not the author".into())?;
                approach.2 = false;
            }
            Action::CommentCreated(c) => {
                let target = c.target_id;
                let live = self.post_alive(&target) || self.approach_alive(&target);
                ensure(live, || "comment on a dead target".into())?;
                ensure(!self.blocked(actor, self.owner(&target).unwrap()), || {
                    "blocked".into()
                })?;
                if let Some(parent) = c.parent_id {
                    ensure(self.comment_alive(&parent), || {
                        "reply to a dead comment".into()
                    })?;
                    let same = self.comments[&parent].1 == target;
                    ensure(same, || "parent on another target".into())?;
                }
                self.mentions_resolve(&c.body)?;
                self.comments.insert(id, (actor, target, true));
            }
            Action::CommentDeleted(c) => {
                ensure(self.comment_alive(&c.comment_id), || "dead comment".into())?;
                let comment = self.comments.get_mut(&c.comment_id).unwrap();
                ensure(comment.0 == actor, || "not the author".into())?;
                comment.2 = false;
            }
            Action::ReactionAdded(r) => {
                let t = r.target_id;
                let live = self.post_alive(&t) || self.approach_alive(&t) || self.comment_alive(&t);
                ensure(live, || "reaction to a dead target".into())?;
                ensure(!self.blocked(actor, self.owner(&t).unwrap()), || {
                    "blocked".into()
                })?;
                let fresh = self.reactions.insert((actor, t, r.kind));
                ensure(fresh, || "reaction added twice".into())?;
            }
            Action::ReactionRemoved(r) => {
                let t = r.target_id;
                let removed = self.reactions.remove(&(actor, t, r.kind));
                ensure(removed, || "removes a missing reaction".into())?;
                let live = self.post_alive(&t) || self.approach_alive(&t) || self.comment_alive(&t);
                ensure(live, || "reaction on a dead target".into())?;
            }
            Action::FollowCreated(f) => {
                self.user(&f.user_id)?;
                ensure(f.user_id != actor, || "self-follow".into())?;
                ensure(!self.blocked(actor, f.user_id), || {
                    "follows across a block".into()
                })?;
                let fresh = self.follows.insert((actor, f.user_id));
                ensure(fresh, || "follows twice".into())?;
            }
            Action::FollowRemoved(f) => {
                let removed = self.follows.remove(&(actor, f.user_id));
                ensure(removed, || "unfollows a non-followee".into())?;
            }
            Action::BlockCreated(b) => {
                self.user(&b.user_id)?;
                ensure(b.user_id != actor, || "self-block".into())?;
                let edge = self.follows.contains(&(actor, b.user_id))
                    || self.follows.contains(&(b.user_id, actor));
                ensure(!edge, || "blocks a follow edge".into())?;
                ensure(!self.blocked(actor, b.user_id), || "blocked twice".into())?;
                self.blocks.insert((actor, b.user_id));
            }
            Action::BlockRemoved(b) => {
                let removed = self.blocks.remove(&(actor, b.user_id));
                ensure(removed, || "unblocks a non-block".into())?;
            }
            Action::DonationMade(d) => {
                let t = d.target_id;
                let owner = if self.approach_alive(&t) {
                    self.approaches[&t].0
                } else if let Some(&(owner, target, ends_at, closed)) = self.campaigns.get(&t) {
                    let live = self.approach_alive(&target) || self.event_alive(&target);
                    ensure(!closed && ends_at > now && live, || {
                        "campaign not open".into()
                    })?;
                    owner
                } else {
                    return Err("donation to neither an approach nor a campaign".into());
                };
                ensure(owner != actor && !self.blocked(actor, owner), || {
                    "self/blocked".into()
                })?;
            }
            Action::CampaignCreated(c) => {
                let t = c.target_id;
                let owner = if self.approach_alive(&t) {
                    self.approaches[&t].0
                } else if self.event_alive(&t) {
                    self.events[&t].0
                } else {
                    return Err("campaign for a dead target".into());
                };
                ensure(owner == actor, || "campaign for someone else's".into())?;
                self.campaigns.insert(id, (actor, t, c.ends_at, false));
            }
            Action::CampaignClosed(c) => {
                let Some(campaign) = self.campaigns.get_mut(&c.campaign_id) else {
                    return Err("unknown campaign".into());
                };
                ensure(campaign.0 == actor, || "not the owner".into())?;
                ensure(!campaign.3 && campaign.2 > now, || {
                    "closes a closed campaign".into()
                })?;
                campaign.3 = true;
            }
            Action::EventCreated(e) => {
                self.events
                    .insert(id, (actor, e.starts_at, e.ends_at, false));
            }
            Action::EventUpdated(e) => {
                ensure(self.event_alive(&e.event_id), || "dead event".into())?;
                let event = self.events.get_mut(&e.event_id).unwrap();
                ensure(event.0 == actor, || "not the owner".into())?;
                event.1 = e.starts_at.unwrap_or(event.1);
                event.2 = e.ends_at.unwrap_or(event.2);
                ensure(event.2 > event.1, || "ends before it starts".into())?;
            }
            Action::EventCancelled(e) => {
                ensure(self.event_alive(&e.event_id), || "dead event".into())?;
                let event = self.events.get_mut(&e.event_id).unwrap();
                ensure(event.0 == actor, || "not the owner".into())?;
                event.3 = true;
            }
            Action::EventRsvp(r) => {
                ensure(self.event_alive(&r.event_id), || "dead event".into())?;
                let owner = self.events[&r.event_id].0;
                ensure(!self.blocked(actor, owner), || "blocked".into())?;
            }
            Action::JobOfferCreated(o) => {
                if let Some(to) = o.to_user_id {
                    self.user(&to)?;
                    ensure(to != actor && !self.blocked(actor, to), || {
                        "bad recipient".into()
                    })?;
                }
                self.offers.insert(id, (actor, o.to_user_id, true));
            }
            Action::JobOfferAnswered(a) => {
                let Some(offer) = self.offers.get_mut(&a.offer_id) else {
                    return Err("unknown offer".into());
                };
                ensure(offer.2 && offer.1 == Some(actor), || {
                    "not the open recipient".into()
                })?;
                offer.2 = false;
            }
            Action::JobOfferWithdrawn(w) => {
                let Some(offer) = self.offers.get_mut(&w.offer_id) else {
                    return Err("unknown offer".into());
                };
                ensure(offer.2 && offer.0 == actor, || "not the open sender".into())?;
                offer.2 = false;
            }
            Action::ProfileUpdated(_) | Action::ResumeUpdated(_) => {}
            Action::ExploreViewed(v) => {
                for item in &v.item_ids {
                    self.explore_item(item)?;
                }
            }
            Action::ExploreClicked(c) => self.explore_item(&c.item_id)?,
            Action::ExploreDismissed(d) => self.explore_item(&d.item_id)?,
            other => return Err(format!("unexpected kind {}", other.kind())),
        }
        Ok(())
    }

    fn explore_item(&self, id: &Uuid) -> Check {
        let live = self.post_alive(id) || self.approach_alive(id) || self.event_alive(id);
        ensure(live, || format!("explore item {id} is not live"))
    }
}
