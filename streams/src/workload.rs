//! A deterministic, realistic social workload for benchmarks and tests.
//!
//! [`Workload`] is an iterator of the [`Envelope`]s a platform of `users` members would write:
//! first one `user.registered` per user, then the initial follow graph (`follow.created`), then
//! `actions` content actions drawn from a [`Mix`] of relative weights.
//!
//! # Guarantees
//! - **Deterministic.** The same [`WorkloadConfig`] yields exactly the same envelopes, ids
//!   included. Ids are UUIDv7s stamped from `received_at` like
//!   [`new_action_id`](philo_events::new_action_id)'s, but their random bits come from the
//!   seeded generator rather than the operating system's; the 12 bits after the version hold the
//!   sub-millisecond part of the time, so ids sort by time down to a `step` of ~250 ns. The
//!   sequence is stable for a given `rand` 0.9 release (the generator itself is defined here).
//! - **Valid.** Every action passes [`Action::validate`] at its `received_at`.
//! - **Resolvable.** Every reference points at something that exists at that moment: posts,
//!   approaches, comments and events that were created and not deleted or cancelled; open
//!   campaigns (not closed, not past `ends_at`); follows only of users not followed yet, unfollows
//!   and unblocks only of existing edges; answers only by an offer's recipient, withdrawals only
//!   by its sender, each at most once. Edits, deletes, closes and cancels come from the owner.
//! - **Time.** The n-th envelope (from 0) is received at `start + n * step`.
//!
//! # Conservative choices
//! Where the views' semantics could go either way, the workload avoids the question:
//! - a deleted post makes its approaches, their comments and the comments under it unusable as
//!   targets (no cascade is assumed, none is relied upon);
//! - a block is only created between users with no follow edge either way, and nobody follows,
//!   comments on, reacts to, donates to, answers the events of or sends offers to someone across
//!   a block;
//! - campaigns raise money for their owner's approach or upcoming event; donations go to
//!   approaches and open campaigns only;
//! - usernames are `[a-z][a-z0-9_]*` (what accounts accepts) and a mention `@name` is followed
//!   by a space or the end of the text.
//!
//! # Shape
//! Actors are drawn from a Zipf-like activity distribution; follow targets from a Zipf-like
//! popularity distribution mixed with uniform choice, plus `celebrities` users (the first ones)
//! with `celebrity_followers` followers each. Comments, reactions, RSVPs and explore items favour
//! recent entities. Procurers (about 0.2 % of users) register and do nothing else.
//!
//! State is kept in vectors indexed by small integers (no maps keyed by strings): the default
//! run (100 k users, 3.2 M initial follows, 1 M actions) peaks at about 65 MB and generates its
//! actions at about 1 M per second in release builds.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Duration, TimeZone, Utc};
use philo_events::action::{
    ApproachCreated, ApproachDeleted, ApproachEdited, BlockCreated, BlockRemoved, CampaignClosed,
    CampaignCreated, CommentCreated, CommentDeleted, Currency, DonationMade, EventCancelled,
    EventCreated, EventRsvp, EventUpdated, ExploreClicked, ExploreDismissed, ExploreViewed,
    FollowCreated, FollowRemoved, JobOfferAnswered, JobOfferCreated, JobOfferWithdrawn,
    OfferAnswer, PostCreated, PostDeleted, PostEdited, ProfileUpdated, ReactionAdded, ReactionKind,
    ReactionRemoved, ResumeUpdated, RsvpStatus, UserRegistered, UserRole,
};
use philo_events::{Action, ActionKind, Envelope};
use rand::{Rng, RngCore};
use uuid::Uuid;

use text::Rand;

/// Relative weights of the content actions; `0` turns a kind off. Each field is one action kind.
///
/// A draw that cannot be satisfied at the time (an answer with no pending offer, an unfollow by
/// someone who follows nobody) is drawn again, up to 16 times, then becomes a `post.created`; so
/// early in a run, before there is much to point at, creations are a little over-represented,
/// and an all-zero mix yields only posts. [`WorkloadStats::redraws`] counts the redraws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    /// `post.created`.
    pub posts: u32,
    /// `post.edited` (by the author).
    pub post_edits: u32,
    /// `post.deleted` (by the author).
    pub post_deletes: u32,
    /// `approach.created`: 85 % on an existing post, the rest standalone.
    pub approaches: u32,
    /// `approach.edited` (by the author).
    pub approach_edits: u32,
    /// `approach.deleted` (by the author).
    pub approach_deletes: u32,
    /// `comment.created` on posts and approaches; 30 % reply to an existing comment.
    pub comments: u32,
    /// `comment.deleted` (by the author).
    pub comment_deletes: u32,
    /// `reaction.added` on posts, approaches and comments.
    pub reactions_added: u32,
    /// `reaction.removed` (of an existing reaction, by its author).
    pub reactions_removed: u32,
    /// `follow.created`.
    pub follows: u32,
    /// `follow.removed`.
    pub unfollows: u32,
    /// `block.created`.
    pub blocks: u32,
    /// `block.removed`.
    pub unblocks: u32,
    /// `donation.made`, half to open campaigns (when there are any), half to approaches.
    pub donations: u32,
    /// `campaign.created` for the actor's approach or upcoming event.
    pub campaigns_created: u32,
    /// `campaign.closed` (by the owner, while open).
    pub campaigns_closed: u32,
    /// `event.created`.
    pub events_created: u32,
    /// `event.updated` (by the owner).
    pub events_updated: u32,
    /// `event.cancelled` (by the owner).
    pub events_cancelled: u32,
    /// `event.rsvp`.
    pub event_rsvps: u32,
    /// `job_offer.created`: 60 % to one user, the rest open.
    pub job_offers_created: u32,
    /// `job_offer.answered` (by the recipient of an addressed, open offer).
    pub job_offers_answered: u32,
    /// `job_offer.withdrawn` (by the sender of an open offer).
    pub job_offers_withdrawn: u32,
    /// `profile.updated`.
    pub profile_updates: u32,
    /// `resume.updated`.
    pub resume_updates: u32,
    /// `explore.viewed`.
    pub explore_views: u32,
    /// `explore.clicked`.
    pub explore_clicks: u32,
    /// `explore.dismissed`.
    pub explore_dismissals: u32,
}

impl Default for Mix {
    /// Roughly per mille: reactions and explore views dominate, then comments, posts and
    /// follows; deletes, blocks and cancellations are rare.
    fn default() -> Self {
        Self {
            posts: 60,
            post_edits: 8,
            post_deletes: 2,
            approaches: 40,
            approach_edits: 4,
            approach_deletes: 1,
            comments: 120,
            comment_deletes: 3,
            reactions_added: 250,
            reactions_removed: 20,
            follows: 60,
            unfollows: 15,
            blocks: 2,
            unblocks: 1,
            donations: 25,
            campaigns_created: 4,
            campaigns_closed: 2,
            events_created: 5,
            events_updated: 4,
            events_cancelled: 1,
            event_rsvps: 30,
            job_offers_created: 8,
            job_offers_answered: 5,
            job_offers_withdrawn: 2,
            profile_updates: 10,
            resume_updates: 5,
            explore_views: 200,
            explore_clicks: 60,
            explore_dismissals: 10,
        }
    }
}

impl Mix {
    /// Every kind the mix can produce with its weight, zero weights included.
    pub fn weights(&self) -> [(ActionKind, u32); 29] {
        use ActionKind as K;
        [
            (K::PostCreated, self.posts),
            (K::PostEdited, self.post_edits),
            (K::PostDeleted, self.post_deletes),
            (K::ApproachCreated, self.approaches),
            (K::ApproachEdited, self.approach_edits),
            (K::ApproachDeleted, self.approach_deletes),
            (K::CommentCreated, self.comments),
            (K::CommentDeleted, self.comment_deletes),
            (K::ReactionAdded, self.reactions_added),
            (K::ReactionRemoved, self.reactions_removed),
            (K::FollowCreated, self.follows),
            (K::FollowRemoved, self.unfollows),
            (K::BlockCreated, self.blocks),
            (K::BlockRemoved, self.unblocks),
            (K::DonationMade, self.donations),
            (K::CampaignCreated, self.campaigns_created),
            (K::CampaignClosed, self.campaigns_closed),
            (K::EventCreated, self.events_created),
            (K::EventUpdated, self.events_updated),
            (K::EventCancelled, self.events_cancelled),
            (K::EventRsvp, self.event_rsvps),
            (K::JobOfferCreated, self.job_offers_created),
            (K::JobOfferAnswered, self.job_offers_answered),
            (K::JobOfferWithdrawn, self.job_offers_withdrawn),
            (K::ProfileUpdated, self.profile_updates),
            (K::ResumeUpdated, self.resume_updates),
            (K::ExploreViewed, self.explore_views),
            (K::ExploreClicked, self.explore_clicks),
            (K::ExploreDismissed, self.explore_dismissals),
        ]
    }
}

/// What to generate. Fields are public; [`WorkloadConfig::scaled`] keeps them consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Seeds every random choice.
    pub seed: u64,
    /// Registered users (at least 2).
    pub users: usize,
    /// Content actions after the registrations and the initial follow graph.
    pub actions: usize,
    /// How many users (the first ones registered) are celebrities.
    pub celebrities: usize,
    /// Followers of each celebrity in the initial graph (capped at the users who can follow).
    pub celebrity_followers: usize,
    /// Mean number of users each user follows initially, besides celebrities.
    pub mean_following: usize,
    /// Receive time of the first envelope.
    pub start: DateTime<Utc>,
    /// Virtual time between consecutive envelopes (positive).
    pub step: Duration,
    /// Relative weights of the content actions.
    pub mix: Mix,
}

impl Default for WorkloadConfig {
    /// A benchmark-like run: 100 000 users, 1 000 000 actions, 5 celebrities with 50 000
    /// followers each, ~30 follows per user, 10 ms between envelopes.
    fn default() -> Self {
        Self::scaled(0x5eed, 100_000, 1_000_000)
    }
}

impl WorkloadConfig {
    /// The default shape for `users` users: 5 celebrities with 50 000 followers each at 100 000
    /// users and above, scaled down proportionally (half the users) below; ~30 follows per user.
    pub fn scaled(seed: u64, users: usize, actions: usize) -> Self {
        Self {
            seed,
            users,
            actions,
            celebrities: if users >= 1_000 {
                5
            } else {
                (users / 200).max(1)
            },
            celebrity_followers: (users / 2).min(50_000),
            mean_following: 30.min(users / 4).max(1),
            start: Utc.with_ymd_and_hms(2025, 1, 6, 8, 0, 0).unwrap(),
            step: Duration::milliseconds(10),
            mix: Mix::default(),
        }
    }

    /// A small run for tests: 500 users, 5 000 actions, 2 celebrities followed by 40 % of the
    /// users, ~10 follows per user, one second between envelopes (so campaigns do expire).
    pub fn small(seed: u64) -> Self {
        Self {
            celebrities: 2,
            celebrity_followers: 200,
            mean_following: 10,
            step: Duration::seconds(1),
            ..Self::scaled(seed, 500, 5_000)
        }
    }
}

/// How many envelopes of each kind a [`Workload`] has yielded so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadStats {
    counts: Vec<u64>,
    redraws: u64,
}

impl WorkloadStats {
    /// Envelopes of `kind` yielded so far.
    pub fn count(&self, kind: ActionKind) -> u64 {
        self.counts.get(kind_index(kind)).copied().unwrap_or(0)
    }

    /// Envelopes yielded so far.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The kinds yielded at least once with their counts, in [`ActionKind::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (ActionKind, u64)> + '_ {
        ActionKind::ALL
            .iter()
            .zip(&self.counts)
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (*k, *n))
    }

    /// Draws from the mix that could not be satisfied at the time (an unfollow by someone who
    /// follows nobody, an answer with no pending offer …) and were drawn again.
    pub fn redraws(&self) -> u64 {
        self.redraws
    }

    fn record(&mut self, kind: ActionKind) {
        if self.counts.is_empty() {
            self.counts = vec![0; ActionKind::ALL.len()];
        }
        self.counts[kind_index(kind)] += 1;
    }
}

impl fmt::Display for WorkloadStats {
    /// One `kind count` line per kind yielded.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (kind, n) in self.iter() {
            writeln!(f, "{:<22}{n:>10}", kind.as_str())?;
        }
        write!(f, "{:<22}{:>10}", "total", self.total())
    }
}

fn kind_index(kind: ActionKind) -> usize {
    ActionKind::ALL.iter().position(|&k| k == kind).unwrap_or(0)
}

/// Something a comment, reaction or explore item can point at, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Item {
    Post(u32),
    Approach(u32),
    Comment(u32),
    Event(u32),
}

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Post {
    id: Uuid,
    author: u32,
    alive: bool,
}

#[derive(Clone, Copy)]
struct Approach {
    id: Uuid,
    author: u32,
    /// Index of the post answered, [`NONE`] when standalone.
    post: u32,
    alive: bool,
}

#[derive(Clone, Copy)]
struct Comment {
    id: Uuid,
    author: u32,
    /// A post or an approach.
    target: Item,
    alive: bool,
}

#[derive(Clone, Copy)]
struct Event {
    id: Uuid,
    owner: u32,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    online: bool,
    cancelled: bool,
}

#[derive(Clone, Copy)]
struct Campaign {
    id: Uuid,
    owner: u32,
    /// An approach or an event.
    target: Item,
    currency: &'static str,
    ends_at: DateTime<Utc>,
    closed: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OfferState {
    Open,
    Done,
}

#[derive(Clone, Copy)]
struct Offer {
    id: Uuid,
    sender: u32,
    /// The recipient, [`NONE`] for an open offer.
    to: u32,
    state: OfferState,
}

/// A Zipf-like distribution over ranks `0..n`: rank `k` has weight `(k + 1)^-exponent`.
struct Skewed {
    cdf: Vec<f64>,
}

impl Skewed {
    fn new(n: usize, exponent: f64) -> Self {
        let mut acc = 0.0;
        let cdf = (1..=n)
            .map(|k| {
                acc += (k as f64).powf(-exponent);
                acc
            })
            .collect();
        Self { cdf }
    }

    fn sample(&self, rng: &mut Rand) -> usize {
        let total = self.cdf.last().copied().unwrap_or(0.0);
        let x = rng.random::<f64>() * total;
        self.cdf
            .partition_point(|&c| c <= x)
            .min(self.cdf.len() - 1)
    }
}

#[derive(Clone, Copy)]
enum Phase {
    Register(usize),
    Follow { user: usize, pos: usize },
    Act(usize),
}

/// The generator: an iterator of envelopes (see the [module docs](self)).
pub struct Workload {
    config: WorkloadConfig,
    rng: Rand,
    phase: Phase,
    next_at: DateTime<Utc>,
    remaining: usize,
    stats: WorkloadStats,
    initial_follows: usize,
    /// Cumulative weights of the mix.
    mix: Vec<(ActionKind, u64)>,

    users: Vec<Uuid>,
    usernames: Vec<String>,
    roles: Vec<UserRole>,
    /// Users who take part (not procurers), ascending.
    social: Vec<u32>,
    activity: Skewed,
    /// `social` users by activity rank.
    by_activity: Vec<u32>,
    popularity: Skewed,
    /// `social` users by popularity rank (celebrities first).
    by_popularity: Vec<u32>,

    following: Vec<Vec<u32>>,
    blocks: HashSet<(u32, u32)>,
    block_list: Vec<(u32, u32)>,
    posts: Vec<Post>,
    approaches: Vec<Approach>,
    comments: Vec<Comment>,
    reactions: HashSet<(u32, Item, u8)>,
    reaction_list: Vec<(u32, Item, u8)>,
    events: Vec<Event>,
    campaigns: Vec<Campaign>,
    open_campaigns: Vec<u32>,
    offers: Vec<Offer>,
    open_offers: Vec<u32>,
    pending_offers: Vec<u32>,
}

impl fmt::Debug for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workload")
            .field("config", &self.config)
            .field("remaining", &self.remaining)
            .field("initial_follows", &self.initial_follows)
            .finish_non_exhaustive()
    }
}

/// How far back "recent" reaches, in entities.
const RECENT: f64 = 400.0;
/// Tries to find a usable entity before giving up on a draw.
const TRIES: usize = 8;

impl Workload {
    /// Builds the users and the initial follow graph; envelopes come from iterating.
    ///
    /// # Panics
    /// When `config.users < 2` (or ≥ 2^32 - 1) or `config.step` is not positive.
    pub fn new(config: WorkloadConfig) -> Self {
        assert!(config.users >= 2, "a workload needs at least 2 users");
        assert!(config.step > Duration::zero(), "`step` must be positive");
        assert!(config.users < NONE as usize, "too many users");
        let mut rng = Rand::seed(config.seed);
        let n = config.users;
        let celebrities = config.celebrities.min(n);

        let mut users = Vec::with_capacity(n);
        let mut usernames = Vec::with_capacity(n);
        let mut roles = Vec::with_capacity(n);
        let mut at = config.start;
        for i in 0..n {
            users.push(make_id(&mut rng, at));
            usernames.push(text::username(&mut rng, i));
            // Two social users at least, celebrities included.
            let role = match rng.random_range(0..10_000) {
                _ if i < celebrities.max(2) => UserRole::User,
                0..20 => UserRole::Procurer,
                20..25 => UserRole::Admin,
                _ => UserRole::User,
            };
            roles.push(role);
            at += config.step;
        }
        let social: Vec<u32> = (0..n as u32)
            .filter(|&u| roles[u as usize] != UserRole::Procurer)
            .collect();

        let mut by_activity: Vec<u32> = social[celebrities..].to_vec();
        shuffle(&mut rng, &mut by_activity);
        for c in 0..celebrities {
            // Celebrities post a lot, not all the most.
            by_activity.insert((c * 10).min(by_activity.len()), c as u32);
        }
        let mut by_popularity: Vec<u32> = social[celebrities..].to_vec();
        shuffle(&mut rng, &mut by_popularity);
        by_popularity.splice(0..0, 0..celebrities as u32);

        let mut workload = Self {
            rng,
            phase: Phase::Register(0),
            next_at: config.start,
            remaining: 0,
            stats: WorkloadStats::default(),
            initial_follows: 0,
            mix: cumulative(&config.mix),
            users,
            usernames,
            roles,
            activity: Skewed::new(social.len(), 0.8),
            popularity: Skewed::new(social.len(), 0.9),
            social,
            by_activity,
            by_popularity,
            following: vec![Vec::new(); n],
            blocks: HashSet::new(),
            block_list: Vec::new(),
            posts: Vec::new(),
            approaches: Vec::new(),
            comments: Vec::new(),
            reactions: HashSet::new(),
            reaction_list: Vec::new(),
            events: Vec::new(),
            campaigns: Vec::new(),
            open_campaigns: Vec::new(),
            offers: Vec::new(),
            open_offers: Vec::new(),
            pending_offers: Vec::new(),
            config,
        };
        workload.build_graph(celebrities);
        workload.initial_follows = workload.following.iter().map(Vec::len).sum();
        workload.remaining = n + workload.initial_follows + workload.config.actions;
        workload
    }

    /// The configuration this workload was built from.
    pub fn config(&self) -> &WorkloadConfig {
        &self.config
    }

    /// Every user's id, in registration order.
    pub fn users(&self) -> &[Uuid] {
        &self.users
    }

    /// Every user's username, in registration order (parallel to [`users`](Self::users)).
    pub fn usernames(&self) -> &[String] {
        &self.usernames
    }

    /// Every user's role, in registration order (parallel to [`users`](Self::users)).
    pub fn roles(&self) -> &[UserRole] {
        &self.roles
    }

    /// The celebrities' ids (the first users registered).
    pub fn celebrities(&self) -> &[Uuid] {
        &self.users[..self.config.celebrities.min(self.users.len())]
    }

    /// How many `follow.created` the initial graph holds.
    pub fn initial_follows(&self) -> usize {
        self.initial_follows
    }

    /// What has been yielded so far.
    pub fn stats(&self) -> &WorkloadStats {
        &self.stats
    }

    fn build_graph(&mut self, celebrities: usize) {
        let social_n = self.social.len();
        let per_celebrity = self.config.celebrity_followers.min(social_n - 1);
        for c in 0..celebrities {
            // Celebrities are the first users, all social: `c` is also their position in `social`.
            let picks = rand::seq::index::sample(&mut self.rng, social_n - 1, per_celebrity);
            for pos in picks.iter() {
                let pos = if pos >= c { pos + 1 } else { pos };
                self.following[self.social[pos] as usize].push(c as u32);
            }
        }
        let mean = self.config.mean_following as f64;
        let cap = (social_n - 1).min(self.config.mean_following * 20 + 20);
        for s in 0..social_n {
            let u = self.social[s];
            let exp = -(1.0 - self.rng.random::<f64>()).ln();
            let want = ((exp * mean).round() as usize).min(cap);
            let mut added = 0;
            for _ in 0..want * 2 + 8 {
                if added == want {
                    break;
                }
                if let Some(t) = self.follow_target(u) {
                    self.following[u as usize].push(t);
                    added += 1;
                }
            }
        }
    }

    /// A user `u` may follow now: popular (70 %) or anyone, not `u`, not followed, not blocked.
    fn follow_target(&mut self, u: u32) -> Option<u32> {
        let t = if self.rng.random_bool(0.7) {
            self.popular()
        } else {
            self.anyone()
        };
        let ok = t != u && !self.following[u as usize].contains(&t) && !self.blocked(u, t);
        ok.then_some(t)
    }

    fn actor(&mut self) -> u32 {
        self.by_activity[self.activity.sample(&mut self.rng)]
    }

    fn popular(&mut self) -> u32 {
        self.by_popularity[self.popularity.sample(&mut self.rng)]
    }

    fn anyone(&mut self) -> u32 {
        self.social[self.rng.random_range(0..self.social.len())]
    }

    fn blocked(&self, a: u32, b: u32) -> bool {
        !self.blocks.is_empty() && (self.blocks.contains(&(a, b)) || self.blocks.contains(&(b, a)))
    }

    fn next_action(&mut self, id: Uuid, now: DateTime<Utc>) -> (u32, Action) {
        let total = self.mix.last().map_or(0, |&(_, w)| w);
        if total > 0 {
            for _ in 0..16 {
                let x = self.rng.random_range(0..total);
                let i = self.mix.partition_point(|&(_, w)| w <= x);
                if let Some(done) = self.generate(self.mix[i].0, id, now) {
                    return done;
                }
                self.stats.redraws += 1;
            }
        }
        self.post_created(id)
    }
}

/// Cumulative weights of the kinds with a positive weight.
fn cumulative(mix: &Mix) -> Vec<(ActionKind, u64)> {
    let mut acc = 0u64;
    mix.weights()
        .into_iter()
        .filter(|&(_, w)| w > 0)
        .map(|(k, w)| {
            acc += u64::from(w);
            (k, acc)
        })
        .collect()
}

fn shuffle(rng: &mut Rand, v: &mut [u32]) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.random_range(0..=i));
    }
}

/// A UUIDv7 for `at`: milliseconds, then the sub-millisecond fraction in 12 bits, then random.
fn make_id(rng: &mut Rand, at: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let sub_ms = u64::from(at.timestamp_subsec_nanos() % 1_000_000);
    let fraction = (sub_ms * 4096 / 1_000_000) as u16;
    let mut bytes = [0u8; 10];
    bytes[..2].copy_from_slice(&fraction.to_be_bytes());
    bytes[2..].copy_from_slice(&rng.next_u64().to_le_bytes());
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
}

impl Iterator for Workload {
    type Item = Envelope;

    fn next(&mut self) -> Option<Envelope> {
        let (actor, action) = loop {
            match self.phase {
                Phase::Register(i) if i < self.users.len() => {
                    self.phase = Phase::Register(i + 1);
                    let action = UserRegistered {
                        username: self.usernames[i].clone(),
                        role: self.roles[i],
                    };
                    break (i as u32, action.into());
                }
                Phase::Register(_) => self.phase = Phase::Follow { user: 0, pos: 0 },
                Phase::Follow { user, pos } if user < self.users.len() => {
                    match self.following[user].get(pos) {
                        Some(&t) => {
                            self.phase = Phase::Follow { user, pos: pos + 1 };
                            let action = FollowCreated {
                                user_id: self.users[t as usize],
                            };
                            break (user as u32, action.into());
                        }
                        None => {
                            self.phase = Phase::Follow {
                                user: user + 1,
                                pos: 0,
                            }
                        }
                    }
                }
                Phase::Follow { .. } => self.phase = Phase::Act(0),
                Phase::Act(n) if n < self.config.actions => {
                    self.phase = Phase::Act(n + 1);
                    let now = self.next_at;
                    let id = make_id(&mut self.rng, now);
                    let (actor, action) = self.next_action(id, now);
                    return Some(self.emit(id, actor, action));
                }
                Phase::Act(_) => return None,
            }
        };
        let id = make_id(&mut self.rng, self.next_at);
        Some(self.emit(id, actor, action))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Workload {}

impl Workload {
    fn emit(&mut self, id: Uuid, actor: u32, action: Action) -> Envelope {
        let now = self.next_at;
        self.next_at = now + self.config.step;
        self.remaining -= 1;
        self.stats.record(action.kind());
        Envelope::with_id(id, self.users[actor as usize], action, now)
    }

    /// A burst of `posts` posts, after everything the iterator yields, by the `authors`
    /// most-followed users with fewer than `below` followers in the graph as it stands (the
    /// initial graph and the follows and unfollows yielded so far), in turn: the writes a
    /// fan-out-on-write feed is built for. Fewer authors when fewer qualify; none when none do.
    pub fn post_burst(&mut self, posts: usize, authors: usize, below: usize) -> Vec<Envelope> {
        let mut followers = vec![0usize; self.users.len()];
        for list in &self.following {
            for &t in list {
                followers[t as usize] += 1;
            }
        }
        let mut ranked: Vec<u32> = self
            .social
            .iter()
            .copied()
            .filter(|&u| followers[u as usize] < below)
            .collect();
        ranked.sort_by_key(|&u| std::cmp::Reverse(followers[u as usize]));
        ranked.truncate(authors);
        if ranked.is_empty() {
            return Vec::new();
        }
        (0..posts)
            .map(|i| {
                let now = self.next_at;
                self.next_at = now + self.config.step;
                let id = make_id(&mut self.rng, now);
                let author = ranked[i % ranked.len()];
                let action = PostCreated {
                    title: text::post_title(&mut self.rng),
                    body: text::paragraphs(&mut self.rng, 1, 2),
                    tags: text::tags(&mut self.rng),
                };
                self.posts.push(Post {
                    id,
                    author,
                    alive: true,
                });
                self.stats.record(ActionKind::PostCreated);
                Envelope::with_id(id, self.users[author as usize], action.into(), now)
            })
            .collect()
    }
}

/// The generators: each returns the actor and the action, or `None` when the draw cannot be
/// satisfied right now (nothing to reference, only blocked candidates …).
impl Workload {
    fn generate(
        &mut self,
        kind: ActionKind,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Option<(u32, Action)> {
        use ActionKind as K;
        match kind {
            K::PostCreated => Some(self.post_created(id)),
            K::PostEdited => self.post_edited(),
            K::PostDeleted => self.post_deleted(),
            K::ApproachCreated => Some(self.approach_created(id)),
            K::ApproachEdited => self.approach_edited(),
            K::ApproachDeleted => self.approach_deleted(),
            K::CommentCreated => self.comment_created(id),
            K::CommentDeleted => self.comment_deleted(),
            K::ReactionAdded => self.reaction_added(),
            K::ReactionRemoved => self.reaction_removed(),
            K::FollowCreated => self.follow_created(),
            K::FollowRemoved => self.follow_removed(),
            K::BlockCreated => self.block_created(),
            K::BlockRemoved => self.block_removed(),
            K::DonationMade => self.donation_made(id, now),
            K::CampaignCreated => self.campaign_created(id, now),
            K::CampaignClosed => self.campaign_closed(now),
            K::EventCreated => Some(self.event_created(id, now)),
            K::EventUpdated => self.event_updated(),
            K::EventCancelled => self.event_cancelled(),
            K::EventRsvp => self.event_rsvp(),
            K::JobOfferCreated => Some(self.job_offer_created(id)),
            K::JobOfferAnswered => self.job_offer_answered(),
            K::JobOfferWithdrawn => self.job_offer_withdrawn(),
            K::ProfileUpdated => Some(self.profile_updated()),
            K::ResumeUpdated => Some(self.resume_updated()),
            K::ExploreViewed => self.explore_viewed(),
            K::ExploreClicked => {
                let (actor, item) = self.explore_item()?;
                Some((actor, ExploreClicked { item_id: item }.into()))
            }
            K::ExploreDismissed => {
                let (actor, item) = self.explore_item()?;
                Some((actor, ExploreDismissed { item_id: item }.into()))
            }
            _ => None,
        }
    }

    // --- picking what exists ---

    /// An index into a list of `len`, favouring the end (recent entities).
    fn recent(&mut self, len: usize) -> Option<usize> {
        if len == 0 {
            return None;
        }
        let back = if self.rng.random_bool(0.8) {
            (-(1.0 - self.rng.random::<f64>()).ln() * RECENT) as usize
        } else {
            self.rng.random_range(0..len)
        };
        Some(len - 1 - back.min(len - 1))
    }

    /// A recent index of a list of `len` for which `ok` holds, within [`TRIES`].
    fn pick(&mut self, len: usize, ok: impl Fn(&Self, u32) -> bool) -> Option<u32> {
        for _ in 0..TRIES {
            let i = self.recent(len)? as u32;
            if ok(self, i) {
                return Some(i);
            }
        }
        None
    }

    fn post_ok(&self, p: u32) -> bool {
        self.posts[p as usize].alive
    }

    fn approach_ok(&self, a: u32) -> bool {
        let a = &self.approaches[a as usize];
        a.alive && (a.post == NONE || self.post_ok(a.post))
    }

    fn item_ok(&self, item: Item) -> bool {
        match item {
            Item::Post(p) => self.post_ok(p),
            Item::Approach(a) => self.approach_ok(a),
            Item::Comment(c) => {
                let c = &self.comments[c as usize];
                c.alive && self.item_ok(c.target)
            }
            Item::Event(e) => !self.events[e as usize].cancelled,
        }
    }

    fn item_owner(&self, item: Item) -> u32 {
        match item {
            Item::Post(p) => self.posts[p as usize].author,
            Item::Approach(a) => self.approaches[a as usize].author,
            Item::Comment(c) => self.comments[c as usize].author,
            Item::Event(e) => self.events[e as usize].owner,
        }
    }

    fn item_id(&self, item: Item) -> Uuid {
        match item {
            Item::Post(p) => self.posts[p as usize].id,
            Item::Approach(a) => self.approaches[a as usize].id,
            Item::Comment(c) => self.comments[c as usize].id,
            Item::Event(e) => self.events[e as usize].id,
        }
    }

    /// A live post, approach or comment (by these odds) that `actor` may interact with.
    fn content_item(&mut self, actor: u32, posts: f64, approaches: f64) -> Option<Item> {
        let x = self.rng.random::<f64>();
        let item = if x < posts {
            Item::Post(self.pick(self.posts.len(), Self::post_ok)?)
        } else if x < posts + approaches {
            Item::Approach(self.pick(self.approaches.len(), Self::approach_ok)?)
        } else {
            let c = self.pick(self.comments.len(), |w, c| w.item_ok(Item::Comment(c)))?;
            Item::Comment(c)
        };
        (!self.blocked(actor, self.item_owner(item))).then_some(item)
    }

    /// Appends ` cc @name` (someone the actor follows, or someone popular) to `text`.
    fn mention(&mut self, actor: u32, text: &mut String) {
        let followed = &self.following[actor as usize];
        let who = if !followed.is_empty() && self.rng.random_bool(0.5) {
            followed[self.rng.random_range(0..followed.len())]
        } else {
            self.popular()
        };
        if who != actor {
            text.push_str(" cc @");
            text.push_str(&self.usernames[who as usize]);
        }
    }

    // --- content ---

    fn post_created(&mut self, id: Uuid) -> (u32, Action) {
        let actor = self.actor();
        let title = text::post_title(&mut self.rng);
        let mut body = text::paragraphs(&mut self.rng, 1, 4);
        if self.rng.random_bool(0.1) {
            self.mention(actor, &mut body);
        }
        let tags = text::tags(&mut self.rng);
        self.posts.push(Post {
            id,
            author: actor,
            alive: true,
        });
        (actor, PostCreated { title, body, tags }.into())
    }

    fn post_edited(&mut self) -> Option<(u32, Action)> {
        let i = self.pick(self.posts.len(), Self::post_ok)? as usize;
        let p = self.posts[i];
        let mask = self.rng.random_range(1..8u8);
        let rng = &mut self.rng;
        let action = PostEdited {
            post_id: p.id,
            title: (mask & 1 != 0).then(|| text::post_title(rng)),
            body: (mask & 2 != 0).then(|| text::paragraphs(rng, 1, 4)),
            tags: (mask & 4 != 0).then(|| text::tags(rng)),
        };
        Some((p.author, action.into()))
    }

    fn post_deleted(&mut self) -> Option<(u32, Action)> {
        let i = self.pick(self.posts.len(), Self::post_ok)? as usize;
        self.posts[i].alive = false;
        let p = self.posts[i];
        Some((p.author, PostDeleted { post_id: p.id }.into()))
    }

    fn approach_created(&mut self, id: Uuid) -> (u32, Action) {
        let actor = self.actor();
        let mut post = NONE;
        if self.rng.random_bool(0.85)
            && let Some(p) = self.pick(self.posts.len(), Self::post_ok)
            && !self.blocked(actor, self.posts[p as usize].author)
        {
            post = p;
        }
        let title = text::approach_title(&mut self.rng);
        let body = text::paragraphs(&mut self.rng, 1, 5);
        self.approaches.push(Approach {
            id,
            author: actor,
            post,
            alive: true,
        });
        let post_id = (post != NONE).then(|| self.posts[post as usize].id);
        let action = ApproachCreated {
            post_id,
            title,
            body,
        };
        (actor, action.into())
    }

    fn approach_edited(&mut self) -> Option<(u32, Action)> {
        let i = self.pick(self.approaches.len(), Self::approach_ok)? as usize;
        let a = self.approaches[i];
        let mask = self.rng.random_range(1..4u8);
        let rng = &mut self.rng;
        let action = ApproachEdited {
            approach_id: a.id,
            title: (mask & 1 != 0).then(|| text::approach_title(rng)),
            body: (mask & 2 != 0).then(|| text::paragraphs(rng, 1, 5)),
        };
        Some((a.author, action.into()))
    }

    fn approach_deleted(&mut self) -> Option<(u32, Action)> {
        let i = self.pick(self.approaches.len(), Self::approach_ok)? as usize;
        self.approaches[i].alive = false;
        let a = self.approaches[i];
        Some((a.author, ApproachDeleted { approach_id: a.id }.into()))
    }

    fn comment_created(&mut self, id: Uuid) -> Option<(u32, Action)> {
        let actor = self.actor();
        let (target, parent) = if !self.comments.is_empty() && self.rng.random_bool(0.3) {
            let c = self.pick(self.comments.len(), |w, c| w.item_ok(Item::Comment(c)))?;
            (self.comments[c as usize].target, Some(c))
        } else if self.approaches.is_empty() || self.rng.random_bool(0.75) {
            (
                Item::Post(self.pick(self.posts.len(), Self::post_ok)?),
                None,
            )
        } else {
            let a = self.pick(self.approaches.len(), Self::approach_ok)?;
            (Item::Approach(a), None)
        };
        if self.blocked(actor, self.item_owner(target)) {
            return None;
        }
        let mut body = String::new();
        if let Some(parent) = parent {
            let to = self.comments[parent as usize].author;
            if self.blocked(actor, to) {
                return None;
            }
            if to != actor && self.rng.random_bool(0.5) {
                body.push('@');
                body.push_str(&self.usernames[to as usize]);
                body.push(' ');
            }
        }
        text::sentences(&mut self.rng, &mut body, 1, 4);
        if parent.is_none() && self.rng.random_bool(0.1) {
            self.mention(actor, &mut body);
        }
        self.comments.push(Comment {
            id,
            author: actor,
            target,
            alive: true,
        });
        let action = CommentCreated {
            target_id: self.item_id(target),
            body,
            parent_id: parent.map(|c| self.comments[c as usize].id),
        };
        Some((actor, action.into()))
    }

    fn comment_deleted(&mut self) -> Option<(u32, Action)> {
        let ok = |w: &Self, c| w.item_ok(Item::Comment(c));
        let i = self.pick(self.comments.len(), ok)? as usize;
        self.comments[i].alive = false;
        let c = self.comments[i];
        Some((c.author, CommentDeleted { comment_id: c.id }.into()))
    }

    fn reaction_added(&mut self) -> Option<(u32, Action)> {
        let actor = self.actor();
        let item = self.content_item(actor, 0.55, 0.2)?;
        let kind = self.rng.random_range(0..100u8);
        let kind = match kind {
            0..50 => 0,
            50..60 => 1,
            60..75 => 2,
            75..83 => 3,
            83..93 => 4,
            _ => 5,
        };
        if self.item_owner(item) == actor || !self.reactions.insert((actor, item, kind)) {
            return None;
        }
        self.reaction_list.push((actor, item, kind));
        let action = ReactionAdded {
            target_id: self.item_id(item),
            kind: REACTIONS[kind as usize],
        };
        Some((actor, action.into()))
    }

    fn reaction_removed(&mut self) -> Option<(u32, Action)> {
        for _ in 0..TRIES {
            let i = self.recent(self.reaction_list.len())?;
            let reaction = self.reaction_list.swap_remove(i);
            self.reactions.remove(&reaction);
            let (actor, item, kind) = reaction;
            // A reaction on something deleted is gone with it: forget it and look again.
            if self.item_ok(item) {
                let action = ReactionRemoved {
                    target_id: self.item_id(item),
                    kind: REACTIONS[kind as usize],
                };
                return Some((actor, action.into()));
            }
        }
        None
    }

    // --- the graph ---

    fn follow_created(&mut self) -> Option<(u32, Action)> {
        let actor = self.actor();
        for _ in 0..TRIES {
            if let Some(t) = self.follow_target(actor) {
                self.following[actor as usize].push(t);
                let user_id = self.users[t as usize];
                return Some((actor, FollowCreated { user_id }.into()));
            }
        }
        None
    }

    fn follow_removed(&mut self) -> Option<(u32, Action)> {
        let actor = self.actor();
        let followed = &mut self.following[actor as usize];
        if followed.is_empty() {
            return None;
        }
        let t = followed.swap_remove(self.rng.random_range(0..followed.len()));
        let user_id = self.users[t as usize];
        Some((actor, FollowRemoved { user_id }.into()))
    }

    fn block_created(&mut self) -> Option<(u32, Action)> {
        let actor = self.actor();
        let t = self.anyone();
        let free = t != actor
            && !self.following[actor as usize].contains(&t)
            && !self.following[t as usize].contains(&actor)
            && !self.blocked(actor, t);
        if !free {
            return None;
        }
        self.blocks.insert((actor, t));
        self.block_list.push((actor, t));
        let user_id = self.users[t as usize];
        Some((actor, BlockCreated { user_id }.into()))
    }

    fn block_removed(&mut self) -> Option<(u32, Action)> {
        if self.block_list.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.block_list.len());
        let (actor, t) = self.block_list.swap_remove(i);
        self.blocks.remove(&(actor, t));
        let user_id = self.users[t as usize];
        Some((actor, BlockRemoved { user_id }.into()))
    }

    // --- money ---

    fn campaign_open(&self, c: u32, now: DateTime<Utc>) -> bool {
        let c = &self.campaigns[c as usize];
        !c.closed && c.ends_at > now && self.item_ok(c.target)
    }

    /// An open campaign, dropping closed and expired ones met on the way.
    fn open_campaign(&mut self, now: DateTime<Utc>) -> Option<u32> {
        for _ in 0..TRIES {
            if self.open_campaigns.is_empty() {
                return None;
            }
            let i = self.rng.random_range(0..self.open_campaigns.len());
            let c = self.open_campaigns[i];
            if self.campaign_open(c, now) {
                return Some(c);
            }
            self.open_campaigns.swap_remove(i);
        }
        None
    }

    fn donation_made(&mut self, id: Uuid, now: DateTime<Utc>) -> Option<(u32, Action)> {
        let actor = self.actor();
        let (target, owner, currency) = match self.rng.random_bool(0.5) {
            true if !self.open_campaigns.is_empty() => {
                let i = self.open_campaign(now)? as usize;
                let c = self.campaigns[i];
                (c.id, c.owner, c.currency)
            }
            _ => {
                let i = self.pick(self.approaches.len(), Self::approach_ok)? as usize;
                let a = self.approaches[i];
                (a.id, a.author, text::currency(&mut self.rng))
            }
        };
        if owner == actor || self.blocked(actor, owner) {
            return None;
        }
        let action = DonationMade {
            target_id: target,
            amount_minor: log_uniform(&mut self.rng, 2.0, 5.0),
            currency: Currency::new(currency),
            payment_ref: format!("pay_{}", id.simple()),
        };
        Some((actor, action.into()))
    }

    fn campaign_created(&mut self, id: Uuid, now: DateTime<Utc>) -> Option<(u32, Action)> {
        let target = if self.events.is_empty() || self.rng.random_bool(0.7) {
            Item::Approach(self.pick(self.approaches.len(), Self::approach_ok)?)
        } else {
            let upcoming = move |w: &Self, e: u32| {
                let e = &w.events[e as usize];
                !e.cancelled && e.ends_at > now
            };
            Item::Event(self.pick(self.events.len(), upcoming)?)
        };
        let owner = self.item_owner(target);
        let currency = text::currency(&mut self.rng);
        let ends_at = now + Duration::seconds(self.rng.random_range(1_800..7 * 86_400));
        let goal_minor = log_uniform(&mut self.rng, 4.0, 7.0);
        self.open_campaigns.push(self.campaigns.len() as u32);
        self.campaigns.push(Campaign {
            id,
            owner,
            target,
            currency,
            ends_at,
            closed: false,
        });
        let action = CampaignCreated {
            target_id: self.item_id(target),
            goal_minor,
            currency: Currency::new(currency),
            ends_at,
        };
        Some((owner, action.into()))
    }

    fn campaign_closed(&mut self, now: DateTime<Utc>) -> Option<(u32, Action)> {
        let c = self.open_campaign(now)?;
        let campaign = &mut self.campaigns[c as usize];
        campaign.closed = true;
        let action = CampaignClosed {
            campaign_id: campaign.id,
        };
        Some((campaign.owner, action.into()))
    }

    // --- events ---

    fn event_created(&mut self, id: Uuid, now: DateTime<Utc>) -> (u32, Action) {
        let actor = self.actor();
        // Mostly upcoming; a few recorded after the fact.
        let offset = if self.rng.random_bool(0.95) {
            self.rng.random_range(3_600..30 * 86_400)
        } else {
            -self.rng.random_range(3_600..30 * 86_400)
        };
        let starts_at = now + Duration::seconds(offset / 60 * 60);
        let ends_at = starts_at + Duration::minutes(self.rng.random_range(60..=240));
        let online = self.rng.random_bool(0.4);
        let (location, online_url) = self.venue(online, id);
        let capacity = self
            .rng
            .random_bool(0.6)
            .then(|| self.rng.random_range(10..=500));
        self.events.push(Event {
            id,
            owner: actor,
            starts_at,
            ends_at,
            online,
            cancelled: false,
        });
        let action = EventCreated {
            title: text::event_title(&mut self.rng),
            description: text::paragraphs(&mut self.rng, 1, 3),
            starts_at,
            ends_at,
            location,
            online_url,
            capacity,
        };
        (actor, action.into())
    }

    fn venue(&mut self, online: bool, id: Uuid) -> (Option<String>, Option<String>) {
        if online {
            let room = &id.simple().to_string()[20..];
            (None, Some(format!("https://meet.example.org/{room}")))
        } else {
            (Some(text::location(&mut self.rng).to_owned()), None)
        }
    }

    fn event_ok(&self, e: u32) -> bool {
        !self.events[e as usize].cancelled
    }

    fn event_updated(&mut self) -> Option<(u32, Action)> {
        let e = self.pick(self.events.len(), Self::event_ok)?;
        let event = self.events[e as usize];
        let mut action = EventUpdated {
            event_id: event.id,
            title: None,
            description: None,
            starts_at: None,
            ends_at: None,
            location: None,
            online_url: None,
            capacity: None,
        };
        match self.rng.random_range(0..6) {
            0 => action.title = Some(text::event_title(&mut self.rng)),
            1 => action.description = Some(text::paragraphs(&mut self.rng, 1, 3)),
            2 => {
                let shift = Duration::hours(self.rng.random_range(1..=168));
                let (starts_at, ends_at) = (event.starts_at + shift, event.ends_at + shift);
                action.starts_at = Some(starts_at);
                action.ends_at = Some(ends_at);
                self.events[e as usize].starts_at = starts_at;
                self.events[e as usize].ends_at = ends_at;
            }
            3 => {
                // Only the end moves, later: still after the stored start.
                let ends_at = event.ends_at + Duration::minutes(self.rng.random_range(15..=120));
                action.ends_at = Some(ends_at);
                self.events[e as usize].ends_at = ends_at;
            }
            4 => {
                let online = !event.online;
                (action.location, action.online_url) = self.venue(online, event.id);
                self.events[e as usize].online = online;
            }
            _ => action.capacity = Some(self.rng.random_range(10..=1_000)),
        }
        Some((event.owner, action.into()))
    }

    fn event_cancelled(&mut self) -> Option<(u32, Action)> {
        let e = self.pick(self.events.len(), Self::event_ok)? as usize;
        self.events[e].cancelled = true;
        let reason = self
            .rng
            .random_bool(0.5)
            .then(|| text::sentence_string(&mut self.rng));
        let event = self.events[e];
        let action = EventCancelled {
            event_id: event.id,
            reason,
        };
        Some((event.owner, action.into()))
    }

    fn event_rsvp(&mut self) -> Option<(u32, Action)> {
        let actor = self.actor();
        let i = self.pick(self.events.len(), Self::event_ok)? as usize;
        let event = self.events[i];
        if event.owner == actor || self.blocked(actor, event.owner) {
            return None;
        }
        let status = match self.rng.random_range(0..100) {
            0..50 => RsvpStatus::Going,
            50..85 => RsvpStatus::Interested,
            _ => RsvpStatus::NotGoing,
        };
        let action = EventRsvp {
            event_id: event.id,
            status,
        };
        Some((actor, action.into()))
    }

    // --- job offers ---

    fn job_offer_created(&mut self, id: Uuid) -> (u32, Action) {
        let actor = self.actor();
        let mut to = NONE;
        if self.rng.random_bool(0.6) {
            let t = self.anyone();
            if t != actor && !self.blocked(actor, t) {
                to = t;
            }
        }
        let index = self.offers.len() as u32;
        self.offers.push(Offer {
            id,
            sender: actor,
            to,
            state: OfferState::Open,
        });
        self.open_offers.push(index);
        if to != NONE {
            self.pending_offers.push(index);
        }
        let rng = &mut self.rng;
        let action = JobOfferCreated {
            to_user_id: (to != NONE).then(|| self.users[to as usize]),
            title: text::job_title(rng).to_owned(),
            description: text::paragraphs(rng, 1, 3),
            skills: text::skills(rng, 6),
            salary_band: rng.random_bool(0.6).then(|| text::salary_band(rng)),
        };
        (actor, action.into())
    }

    /// An open offer from `list` (dropping settled ones met on the way), now settled.
    fn settle_offer(&mut self, pending: bool) -> Option<Offer> {
        for _ in 0..TRIES {
            let list = if pending {
                &mut self.pending_offers
            } else {
                &mut self.open_offers
            };
            if list.is_empty() {
                return None;
            }
            let o = list.swap_remove(self.rng.random_range(0..list.len())) as usize;
            if self.offers[o].state == OfferState::Open {
                self.offers[o].state = OfferState::Done;
                return Some(self.offers[o]);
            }
        }
        None
    }

    fn job_offer_answered(&mut self) -> Option<(u32, Action)> {
        let offer = self.settle_offer(true)?;
        let answer = if self.rng.random_bool(0.4) {
            OfferAnswer::Accepted
        } else {
            OfferAnswer::Declined
        };
        let action = JobOfferAnswered {
            offer_id: offer.id,
            answer,
        };
        Some((offer.to, action.into()))
    }

    fn job_offer_withdrawn(&mut self) -> Option<(u32, Action)> {
        let offer = self.settle_offer(false)?;
        Some((
            offer.sender,
            JobOfferWithdrawn { offer_id: offer.id }.into(),
        ))
    }

    // --- profile, resume, explore ---

    fn profile_updated(&mut self) -> (u32, Action) {
        let actor = self.actor();
        let mask = self.rng.random_range(1..4u8);
        let rng = &mut self.rng;
        let action = ProfileUpdated {
            display_name: (mask & 1 != 0).then(|| text::display_name(rng)),
            description: (mask & 2 != 0).then(|| {
                if rng.random_bool(0.05) {
                    String::new()
                } else {
                    text::paragraphs(rng, 1, 2)
                }
            }),
            sale_opt_out: None,
        };
        (actor, action.into())
    }

    fn resume_updated(&mut self) -> (u32, Action) {
        let actor = self.actor();
        let rng = &mut self.rng;
        let action = ResumeUpdated {
            text: text::paragraphs(rng, 2, 6),
            skills: text::skills(rng, 12),
        };
        (actor, action.into())
    }

    /// A live post (55 %), approach (30 %) or event to show someone.
    fn explore_candidate(&mut self) -> Option<Item> {
        let x = self.rng.random_range(0..100);
        if x < 55 || (self.approaches.is_empty() && self.events.is_empty()) {
            Some(Item::Post(self.pick(self.posts.len(), Self::post_ok)?))
        } else if x < 85 || self.events.is_empty() {
            let a = self.pick(self.approaches.len(), Self::approach_ok)?;
            Some(Item::Approach(a))
        } else {
            Some(Item::Event(self.pick(self.events.len(), Self::event_ok)?))
        }
    }

    fn explore_viewed(&mut self) -> Option<(u32, Action)> {
        let actor = self.actor();
        let want = self.rng.random_range(1..=20);
        let mut item_ids = Vec::with_capacity(want);
        for _ in 0..want * 2 {
            if item_ids.len() == want {
                break;
            }
            if let Some(item) = self.explore_candidate() {
                let id = self.item_id(item);
                if !item_ids.contains(&id) {
                    item_ids.push(id);
                }
            }
        }
        if item_ids.is_empty() {
            return None;
        }
        Some((actor, ExploreViewed { item_ids }.into()))
    }

    fn explore_item(&mut self) -> Option<(u32, Uuid)> {
        let actor = self.actor();
        let item = self.explore_candidate()?;
        Some((actor, self.item_id(item)))
    }
}

const REACTIONS: [ReactionKind; 6] = [
    ReactionKind::Like,
    ReactionKind::Love,
    ReactionKind::Insightful,
    ReactionKind::Celebrate,
    ReactionKind::Support,
    ReactionKind::Curious,
];

/// An integer drawn log-uniformly from `10^lo..10^hi`.
fn log_uniform(rng: &mut Rand, lo: f64, hi: f64) -> i64 {
    10f64.powf(rng.random_range(lo..hi)).round().max(1.0) as i64
}

/// Names and texts: small vocabularies combined at random, with a little non-ASCII so consumers
/// count characters, not bytes.
mod text {
    use philo_events::action::{Currency, SalaryBand, SalaryPeriod};
    use rand::{Rng, RngCore};

    /// xoshiro256++ seeded through SplitMix64: fast, and defined here so a seed's workload does
    /// not change when `rand` changes its own generators.
    pub(super) struct Rand([u64; 4]);

    impl Rand {
        pub(super) fn seed(seed: u64) -> Self {
            let mut s = seed;
            let mut next = || {
                s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            };
            Self([next(), next(), next(), next()])
        }
    }

    impl RngCore for Rand {
        fn next_u32(&mut self) -> u32 {
            (self.next_u64() >> 32) as u32
        }

        fn next_u64(&mut self) -> u64 {
            let s = &mut self.0;
            let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
            let t = s[1] << 17;
            s[2] ^= s[0];
            s[3] ^= s[1];
            s[1] ^= s[2];
            s[0] ^= s[3];
            s[2] ^= t;
            s[3] = s[3].rotate_left(45);
            result
        }

        fn fill_bytes(&mut self, dst: &mut [u8]) {
            for chunk in dst.chunks_mut(8) {
                let bytes = self.next_u64().to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
        }
    }

    fn one<T: Copy>(rng: &mut Rand, list: &[T]) -> T {
        list[rng.random_range(0..list.len())]
    }

    const FIRST: &[&str] = &[
        "ada", "ben", "chloe", "diego", "emma", "farid", "grace", "hugo", "ines", "jonas", "kemal",
        "lena", "mateo", "nora", "omar", "priya", "quinn", "rosa", "sami", "tara", "umar", "vera",
        "wei", "xenia", "yusuf", "zoe", "amara", "bruno", "chen", "dalia", "elif", "felix",
        "giulia", "hana", "ivan", "jana", "kofi", "lucia", "malik", "nina",
    ];
    const LAST: &[&str] = &[
        "adeyemi", "berg", "costa", "dubois", "evans", "fischer", "garcia", "haddad", "ito",
        "jensen", "kowalski", "lopez", "moreau", "nguyen", "okafor", "patel", "quispe", "rossi",
        "schmidt", "tanaka", "ueda", "varga", "wang", "xu", "yilmaz", "zhang", "novak", "silva",
        "khan", "muller",
    ];

    /// A username unique to user `i`: every form ends with a letter or `_` followed by exactly
    /// the decimal `i`, and names hold no digits.
    pub(super) fn username(rng: &mut Rand, i: usize) -> String {
        let (first, last) = (one(rng, FIRST), one(rng, LAST));
        let name = match rng.random_range(0..4) {
            0 => format!("{first}_{last}{i}"),
            1 => format!("{first}{last}{i}"),
            2 => format!("{first}_{i}"),
            _ => format!("{last}_{first}_{i}"),
        };
        if name.len() <= 32 {
            name
        } else {
            format!("u{i}")
        }
    }

    pub(super) fn display_name(rng: &mut Rand) -> String {
        let cap = |s: &str| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        };
        let (first, last) = (one(rng, FIRST), one(rng, LAST));
        match rng.random_range(0..10) {
            0 => format!("{} {} 🚀", cap(first), cap(last)),
            1 => format!("Dr. {} {}", cap(first), cap(last)),
            _ => format!("{} {}", cap(first), cap(last)),
        }
    }

    const TOPICS: &[&str] = &[
        "cold chain",
        "invoicing",
        "cash flow",
        "onboarding",
        "churn",
        "last-mile delivery",
        "procurement",
        "inventory",
        "pricing",
        "compliance",
        "payroll",
        "customer support",
        "lead generation",
        "warehousing",
        "route planning",
        "demand forecasting",
        "hiring",
        "packaging waste",
        "energy costs",
        "bookkeeping",
        "returns",
        "fraud",
        "data quality",
        "scheduling",
        "public tenders",
        "export paperwork",
    ];
    const SEGMENTS: &[&str] = &[
        "small farms",
        "clinics",
        "bakeries",
        "repair shops",
        "cooperatives",
        "freelancers",
        "schools",
        "pharmacies",
        "restaurants",
        "family hotels",
        "craft breweries",
        "NGOs",
        "cafés",
    ];
    const TOOLS: &[&str] = &[
        "a shared spreadsheet",
        "open-source ERP",
        "cheap IoT sensors",
        "a WhatsApp bot",
        "a regional co-op",
        "weekly batching",
        "a simple forecast model",
        "prepaid vouchers",
        "a buyer pool",
        "QR codes",
    ];
    const WORDS: &[&str] = &[
        "we",
        "our",
        "the",
        "a",
        "customers",
        "team",
        "costs",
        "every",
        "month",
        "process",
        "manual",
        "spreadsheet",
        "week",
        "tried",
        "tool",
        "vendor",
        "margin",
        "orders",
        "late",
        "because",
        "suppliers",
        "data",
        "automate",
        "reduce",
        "small",
        "budget",
        "growth",
        "region",
        "local",
        "price",
        "quality",
        "time",
        "hours",
        "errors",
        "system",
        "integrate",
        "pilot",
        "results",
        "feedback",
        "market",
        "demand",
        "season",
        "risk",
        "contract",
        "payment",
        "delay",
        "stock",
        "shipping",
        "partner",
        "network",
        "training",
        "staff",
        "software",
        "report",
        "dashboard",
        "problem",
        "idea",
        "plan",
        "test",
        "measure",
        "scale",
        "simple",
        "cheap",
        "reliable",
        "shared",
        "open",
        "rural",
        "weekly",
        "daily",
        "peak",
        "still",
        "never",
        "always",
        "maybe",
        "works",
        "fails",
        "needs",
        "costs",
        "saves",
        "with",
        "without",
        "for",
        "and",
        "but",
        "so",
        "in",
        "on",
        "at",
        "from",
        "to",
        "of",
        "is",
        "are",
        "was",
        "has",
        "café",
        "naïve",
        "Zürich",
        "São",
        "Paulo",
        "€",
        "→",
        "✓",
    ];

    fn word(rng: &mut Rand) -> &'static str {
        if rng.random_bool(0.1) {
            one(rng, TOPICS)
        } else {
            one(rng, WORDS)
        }
    }

    /// One sentence of 5..=16 words, capitalised, with its full stop.
    pub(super) fn sentence(rng: &mut Rand, out: &mut String) {
        let n = rng.random_range(5..=16);
        for i in 0..n {
            let w = word(rng);
            if i == 0 {
                let mut chars = w.chars();
                if let Some(c) = chars.next() {
                    out.extend(c.to_uppercase());
                    out.push_str(chars.as_str());
                }
            } else {
                out.push(' ');
                out.push_str(w);
            }
        }
        out.push(one(rng, &['.', '.', '.', '?', '!']));
    }

    pub(super) fn sentence_string(rng: &mut Rand) -> String {
        let mut s = String::with_capacity(96);
        sentence(rng, &mut s);
        s
    }

    /// `lo..=hi` sentences appended to `out`, separated by spaces.
    pub(super) fn sentences(rng: &mut Rand, out: &mut String, lo: usize, hi: usize) {
        for i in 0..rng.random_range(lo..=hi) {
            if i > 0 {
                out.push(' ');
            }
            sentence(rng, out);
        }
    }

    /// `lo..=hi` paragraphs of 2..=5 sentences, separated by blank lines.
    pub(super) fn paragraphs(rng: &mut Rand, lo: usize, hi: usize) -> String {
        let mut out = String::with_capacity(512);
        for i in 0..rng.random_range(lo..=hi) {
            if i > 0 {
                out.push_str("\n\n");
            }
            sentences(rng, &mut out, 2, 5);
        }
        out
    }

    pub(super) fn post_title(rng: &mut Rand) -> String {
        let (t, s) = (one(rng, TOPICS), one(rng, SEGMENTS));
        match rng.random_range(0..5) {
            0 => format!("How do we cut {t} costs for {s}?"),
            1 => format!("{} for {s} is broken", capitalise(t)),
            2 => format!("Ideas to automate {t} in {s}"),
            3 => format!("Why is {t} so hard for {s}?"),
            _ => format!("Looking for help with {t}"),
        }
    }

    pub(super) fn approach_title(rng: &mut Rand) -> String {
        let (t, s, tool) = (one(rng, TOPICS), one(rng, SEGMENTS), one(rng, TOOLS));
        match rng.random_range(0..3) {
            0 => format!("Use {tool} to fix {t}"),
            1 => format!("Pilot: {t} for {s} with {tool}"),
            _ => format!("What worked for us: {tool}"),
        }
    }

    pub(super) fn event_title(rng: &mut Rand) -> String {
        let (t, s) = (one(rng, TOPICS), one(rng, SEGMENTS));
        match rng.random_range(0..3) {
            0 => format!("Meetup: {t} for {s}"),
            1 => format!("Workshop — {}", capitalise(t)),
            _ => format!("Ask me anything about {t}"),
        }
    }

    fn capitalise(s: &str) -> String {
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    }

    const TAGS: &[&str] = &[
        "logistics",
        "fintech",
        "agriculture",
        "retail",
        "health",
        "energy",
        "hiring",
        "saas",
        "manufacturing",
        "food",
        "education",
        "climate",
        "payments",
        "ai",
        "open-source",
        "b2b",
        "smb",
        "export",
        "compliance",
        "mobility",
    ];

    /// Up to `max` distinct entries of `list`.
    fn distinct(rng: &mut Rand, list: &[&str], max: usize) -> Vec<String> {
        let n = rng.random_range(0..=max.min(list.len()));
        rand::seq::index::sample(rng, list.len(), n)
            .iter()
            .map(|i| list[i].to_owned())
            .collect()
    }

    pub(super) fn tags(rng: &mut Rand) -> Vec<String> {
        distinct(rng, TAGS, 4)
    }

    const SKILLS: &[&str] = &[
        "Rust",
        "SQL",
        "Python",
        "Project management",
        "Negotiation",
        "Excel",
        "Sales",
        "Logistics planning",
        "Accounting",
        "Machine learning",
        "UX research",
        "Customer support",
        "Data analysis",
        "Go",
        "TypeScript",
        "Marketing",
        "Procurement",
        "Public speaking",
        "Kubernetes",
        "German",
        "Español",
        "Français",
    ];

    pub(super) fn skills(rng: &mut Rand, max: usize) -> Vec<String> {
        distinct(rng, SKILLS, max)
    }

    const JOBS: &[&str] = &[
        "Operations lead",
        "Data analyst",
        "Rust engineer",
        "Supply chain planner",
        "Customer success manager",
        "Bookkeeper (part-time)",
        "Product designer",
        "Field technician",
        "Sales representative",
        "Backend developer",
    ];

    pub(super) fn job_title(rng: &mut Rand) -> &'static str {
        one(rng, JOBS)
    }

    const LOCATIONS: &[&str] = &[
        "Impact Hub Zürich, Sihlquai 131",
        "Community hall, Rue de la République 12, Lyon",
        "Library room 3, Moi Avenue, Nairobi",
        "Coworking Süd, Berlin",
        "Café Central, Herrengasse 14, Wien",
        "Town hall annex, São Paulo",
        "Makerspace, 42 Harbour Street, Cork",
    ];

    pub(super) fn location(rng: &mut Rand) -> &'static str {
        one(rng, LOCATIONS)
    }

    const CURRENCIES: &[&str] = &[
        "EUR", "EUR", "EUR", "USD", "USD", "GBP", "CHF", "KES", "BRL",
    ];

    pub(super) fn currency(rng: &mut Rand) -> &'static str {
        one(rng, CURRENCIES)
    }

    pub(super) fn salary_band(rng: &mut Rand) -> SalaryBand {
        let (period, lo, hi) = match rng.random_range(0..10) {
            0..7 => (SalaryPeriod::Year, 2_500_000, 12_000_000),
            7..9 => (SalaryPeriod::Month, 200_000, 1_000_000),
            _ => (SalaryPeriod::Hour, 1_500, 15_000),
        };
        let min_minor: i64 = rng.random_range(lo..hi) / 100 * 100;
        let max_minor = min_minor + min_minor * rng.random_range(10..=50) / 100;
        SalaryBand {
            min_minor,
            max_minor,
            currency: Currency::new(currency(rng)),
            period,
        }
    }
}
