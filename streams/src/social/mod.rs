//! The `social` job: the follower graph, home feeds, content and counters, derived from the
//! `actions` log in one pass (the feed needs the graph as it was when each post was made, so
//! the views that read each other are written by one processor, in one order).
//!
//! Views and their tables (every key layout is in [`tables`]; encodings in [`keys`]):
//! - **graph**: follow edges both ways, newest first, counts, blocks;
//! - **feed**: per-user home feed (hybrid fan-out, capped), per-author recent items;
//! - **content**: posts, approaches, comments, events, job offers, campaigns, profiles,
//!   reactions, RSVPs, donation totals, counters.
//!
//! Actions whose references do not resolve become failed actions with a reason code (see
//! [`reason`]) and change nothing.

pub(crate) mod content;
pub mod docs;
mod feed;
pub(crate) mod graph;
pub mod keys;
pub mod notify;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use philo_events::{Action, Envelope};
use uuid::Uuid;

use crate::aggregate::Fact;
use crate::job::{Delivery, Outcome, Processor};
use crate::shards::Shards;
use crate::store::{StateStore, StoreError, WriteBatch};
use docs::{ItemDoc, UserDoc};

/// The job's name (consumer group).
pub const JOB: &str = "social";

/// The tables of the social views. pk / ck / value of each.
pub mod tables {
    /// pk user · ck "" · JSON [`UserDoc`](super::docs::UserDoc).
    pub const USERS: &str = "users";
    /// pk lowercase username · ck "" · user id.
    pub const USERNAMES: &str = "usernames";
    /// pk follower · ck followee · follow action id.
    pub const FOLLOW_EDGES: &str = "follow_edges";
    /// pk follower · ck desc(follow id) ++ followee · "".
    pub const FOLLOWING: &str = "following";
    /// pk followee · ck desc(follow id) ++ follower · "".
    pub const FOLLOWERS: &str = "followers";
    /// pk blocker · ck blocked · block action id.
    pub const BLOCKS: &str = "blocks";
    /// pk user · ck stat name · i64 BE.
    pub const USER_STATS: &str = "user_stats";
    /// pk follower · ck author · "": followed authors whose items are pulled at read time.
    pub const PULLED: &str = "pulled_follows";
    /// pk user · ck desc(item id) · author id ++ kind byte.
    pub const FEED: &str = "feed";
    /// pk author · ck desc(item id) · kind byte: the author's recent feed items.
    pub const AUTHOR_ITEMS: &str = "author_items";
    /// pk item id · ck "" · JSON [`ItemDoc`](super::docs::ItemDoc).
    pub const ITEMS: &str = "items";
    /// pk parent id · ck kind byte ++ child id · "": approaches of a post, comments of a target.
    pub const CHILDREN: &str = "children";
    /// pk item id · ck stat name · i64 BE.
    pub const ITEM_STATS: &str = "item_stats";
    /// pk target · ck actor ++ reaction kind · "".
    pub const REACTIONS: &str = "reactions";
    /// pk target · ck currency · i64 BE minor units.
    pub const DONATION_TOTALS: &str = "donation_totals";
    /// pk event · ck user · status string.
    pub const RSVPS: &str = "rsvps";
    /// pk user · ck box byte (b'r' received, b's' sent) ++ desc(offer id) · "".
    pub const OFFER_BOXES: &str = "job_offer_boxes";
    /// pk user · ck desc(notification id) · JSON [`Notification`](super::notify::Notification).
    pub const NOTIFICATIONS: &str = "notifications";
    /// pk user · ck group key · id of the group's current notification.
    pub const NOTIF_GROUPS: &str = "notification_groups";
    /// pk user · ck `read_upto` (notification id) or `prefs` (u16 BE mask).
    pub const NOTIF_STATE: &str = "notification_state";
    /// pk item id · ck hour since the epoch (i64 BE) ++ stat name · i64 BE: engagement per
    /// hour (reactions, comments, approaches, donations), summed by the timely stage.
    pub const ENGAGEMENT: &str = "engagement";
    /// pk author · ck follower · "": followers who opted in to the author's new posts.
    pub const SUBSCRIBERS: &str = "post_subscribers";

    /// Tables with rows held per user (pk = the user): what one user reads, which no decision
    /// of the job reads for another user. With shared work each instance holds these rows for
    /// its users only ([`crate::shards`]); `USER_STATS` holds one such row per user, the unread
    /// notification count ([`super::row_owner`]).
    pub const PER_USER: &[&str] = &[
        FEED,
        PULLED,
        NOTIFICATIONS,
        NOTIF_GROUPS,
        OFFER_BOXES,
        USER_STATS,
    ];

    /// Every table of the job.
    pub const ALL: &[&str] = &[
        USERS,
        USERNAMES,
        FOLLOW_EDGES,
        FOLLOWING,
        FOLLOWERS,
        BLOCKS,
        USER_STATS,
        PULLED,
        FEED,
        AUTHOR_ITEMS,
        ITEMS,
        CHILDREN,
        ITEM_STATS,
        REACTIONS,
        DONATION_TOTALS,
        RSVPS,
        OFFER_BOXES,
        NOTIFICATIONS,
        NOTIF_GROUPS,
        NOTIF_STATE,
        ENGAGEMENT,
        SUBSCRIBERS,
    ];
}

/// Stable reason codes of failed actions.
pub mod reason {
    pub const UNKNOWN_USER: &str = "unknown_user";
    pub const SELF_REFERENCE: &str = "self_reference";
    pub const BLOCKED: &str = "blocked";
    pub const NOT_FOLLOWING: &str = "not_following";
    pub const NOT_BLOCKED: &str = "not_blocked";
    pub const TARGET_NOT_FOUND: &str = "target_not_found";
    pub const TARGET_DELETED: &str = "target_deleted";
    pub const WRONG_TARGET_KIND: &str = "wrong_target_kind";
    pub const NOT_AUTHOR: &str = "not_author";
    pub const NOT_RECIPIENT: &str = "not_recipient";
    pub const ALREADY_CLOSED: &str = "already_closed";
    pub const CAMPAIGN_CLOSED: &str = "campaign_closed";
    pub const CURRENCY_MISMATCH: &str = "currency_mismatch";
    pub const AMOUNT_OVERFLOW: &str = "amount_overflow";
    pub const EVENT_CANCELLED: &str = "event_cancelled";
    pub const PARENT_MISMATCH: &str = "parent_mismatch";
    pub const USERNAME_TAKEN: &str = "username_taken";
    pub const ACCOUNT_ERASED: &str = "account_erased";
}

/// Settings of the social views.
#[derive(Debug, Clone)]
pub struct SocialConfig {
    /// Most items kept in a home feed.
    pub feed_cap: usize,
    /// Authors with at least this many followers are not pushed to feeds; their items are
    /// pulled and merged at read time.
    pub pull_threshold: i64,
    /// How many of a followee's recent items a new follow copies into the follower's feed.
    pub backfill: usize,
    /// How many recent items are kept per author (for backfill and pull).
    pub author_items_cap: usize,
    /// Items the read side keeps decoded, with their counters ([`crate::read::ItemCache`]);
    /// 0 turns the cache off.
    pub read_cache_items: usize,
}

impl Default for SocialConfig {
    fn default() -> Self {
        Self {
            feed_cap: 800,
            pull_threshold: 10_000,
            backfill: 20,
            author_items_cap: 800,
            read_cache_items: 50_000,
        }
    }
}

/// The user whose shard holds a row of the social views (see [`tables::PER_USER`]), or `None`
/// for rows every instance holds. Notification preferences and read markers stay with
/// everyone: subscriptions (held by everyone) follow from preferences.
pub fn row_owner(table: &str, pk: &[u8], ck: &[u8]) -> Option<Uuid> {
    let per_user = match table {
        tables::FEED
        | tables::PULLED
        | tables::NOTIFICATIONS
        | tables::NOTIF_GROUPS
        | tables::OFFER_BOXES => true,
        tables::USER_STATS => ck == notify::NOTIFICATIONS_STAT.as_bytes(),
        _ => false,
    };
    if per_user { keys::uuid_at(pk, 0) } else { None }
}

/// The social job's processor.
pub struct SocialProcessor {
    config: SocialConfig,
    /// Each feed's length and floor, and what the current step wrote to it (see
    /// [`feed::Feeds`]); filled on a miss, so a function of the store.
    feeds: feed::Feeds,
    /// Where each author's recent-items list's live rows end (trim scans start there instead
    /// of walking earlier trims' tombstones).
    author_item_floors: feed::Floors,
    /// Follower lists of well-followed authors (fan-out reads them on every post).
    follower_lists: feed::FollowerLists,
    notify: notify::NotifyCache,
    /// Per user: `None` unknown, `Some(erased)` registered. An exact function of the store,
    /// refilled on a miss; saves decoding the profile on every action.
    users: foldhash::HashMap<Uuid, Option<bool>>,
    facts: Vec<Fact>,
    deliveries: u64,
    /// Whose per-user rows this instance holds: fan-out skips the others' feeds.
    shards: Arc<Shards>,
}

impl SocialProcessor {
    pub fn new(config: SocialConfig) -> Self {
        Self {
            // Replaced by the job before the first action (the partition count comes from the
            // log); until then nothing is skipped.
            shards: Arc::new(Shards::all(0)),
            config,
            feeds: feed::Feeds::default(),
            author_item_floors: feed::Floors::default(),
            follower_lists: feed::FollowerLists::default(),
            notify: notify::NotifyCache::default(),
            users: foldhash::HashMap::default(),
            facts: Vec::new(),
            deliveries: 0,
        }
    }

    pub fn config(&self) -> &SocialConfig {
        &self.config
    }

    /// Whether `user` is registered (`Some`), and if so whether erased.
    pub(crate) fn user_state(
        &mut self,
        ctx: &Ctx<'_>,
        user: &Uuid,
    ) -> Result<Option<bool>, StoreError> {
        if let Some(s) = self.users.get(user) {
            return Ok(*s);
        }
        let s = ctx.user(user)?.map(|u| u.erased);
        if self.users.len() >= 1_000_000 {
            self.users.clear();
        }
        self.users.insert(*user, s);
        Ok(s)
    }

    /// Records a change of `user`'s state made by the current action.
    pub(crate) fn set_user_state(&mut self, user: &Uuid, erased: bool) {
        self.users.insert(*user, Some(erased));
    }

    /// Feed rows written since start (benchmarks read this).
    pub fn deliveries(&self) -> u64 {
        self.deliveries
    }

    /// Feed trims since start that read the committed store rather than the step's staged
    /// writes (see `feed::Feeds`; tests and benchmarks read this).
    pub fn trims_read_committed(&self) -> u64 {
        self.feeds.committed_trims()
    }
}

/// One action's work: the store to read, the batch to fill, counters summed before writing.
pub(crate) struct Ctx<'a> {
    pub store: &'a dyn StateStore,
    pub batch: &'a mut WriteBatch,
    pub env: &'a Envelope,
    counters: HashMap<(&'static str, Bytes, &'static str), i64>,
    facts: Vec<Fact>,
}

pub(crate) type Res = Result<Outcome, StoreError>;

pub(crate) fn fail(reason: &'static str) -> Res {
    Ok(Outcome::Failed(reason))
}

impl<'a> Ctx<'a> {
    pub fn actor(&self) -> Uuid {
        self.env.actor_id
    }

    /// A counter's current value, including this action's pending changes.
    pub fn counter(
        &mut self,
        table: &'static str,
        pk: &Uuid,
        stat: &'static str,
    ) -> Result<i64, StoreError> {
        let key = (table, keys::id(pk), stat);
        if let Some(v) = self.counters.get(&key) {
            return Ok(*v);
        }
        let v = self
            .store
            .get(table, pk.as_bytes(), stat.as_bytes())?
            .map_or(0, |b| keys::decode_i64(&b));
        self.counters.insert(key, v);
        Ok(v)
    }

    /// Adds `delta` to a counter; returns the new value.
    pub fn add(
        &mut self,
        table: &'static str,
        pk: &Uuid,
        stat: &'static str,
        delta: i64,
    ) -> Result<i64, StoreError> {
        let v = self.counter(table, pk, stat)? + delta;
        self.counters.insert((table, keys::id(pk), stat), v);
        Ok(v)
    }

    /// Adds `delta` to a counter no decision in this step reads: summed per step by the timely
    /// stage ([`crate::aggregate`]) and written once per key.
    pub fn fact(&mut self, table: &'static str, pk: &Uuid, stat: &'static str, delta: i64) {
        self.facts.push(Fact {
            table,
            pk: keys::id(pk),
            ck: Bytes::from_static(stat.as_bytes()),
            delta,
        });
    }

    /// Counts one `stat` event on `item` in the hour of this action (event time).
    pub fn engagement(&mut self, item: &Uuid, stat: &'static str) {
        let hour = self.env.received_at.timestamp().div_euclid(3600);
        let mut ck = Vec::with_capacity(8 + stat.len());
        ck.extend_from_slice(&hour.to_be_bytes());
        ck.extend_from_slice(stat.as_bytes());
        self.facts.push(Fact {
            table: tables::ENGAGEMENT,
            pk: keys::id(item),
            ck: Bytes::from(ck),
            delta: 1,
        });
    }

    fn flush_counters(&mut self) {
        for ((table, pk, stat), v) in self.counters.drain() {
            if v == 0 {
                self.batch
                    .delete(table, pk, Bytes::from_static(stat.as_bytes()));
            } else {
                self.batch.put(
                    table,
                    pk,
                    Bytes::from_static(stat.as_bytes()),
                    keys::i64_value(v),
                );
            }
        }
    }

    pub fn user(&self, id: &Uuid) -> Result<Option<UserDoc>, StoreError> {
        Ok(self
            .store
            .get(tables::USERS, id.as_bytes(), b"")?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    pub fn put_user(&mut self, id: &Uuid, doc: &UserDoc) {
        self.batch.put(
            tables::USERS,
            keys::id(id),
            Bytes::new(),
            serde_json::to_vec(doc).expect("plain struct serialises"),
        );
    }

    pub fn item(&self, id: &Uuid) -> Result<Option<ItemDoc>, StoreError> {
        read_item(self.store, id)
    }

    pub fn put_item(&mut self, doc: &ItemDoc) {
        self.batch.put(
            tables::ITEMS,
            keys::id(&doc.id),
            Bytes::new(),
            serde_json::to_vec(doc).expect("plain struct serialises"),
        );
    }

    /// Whether `blocker` blocked `blocked`.
    pub fn blocks(&self, blocker: &Uuid, blocked: &Uuid) -> Result<bool, StoreError> {
        Ok(self
            .store
            .get(tables::BLOCKS, blocker.as_bytes(), blocked.as_bytes())?
            .is_some())
    }

    /// Whether either user blocked the other.
    pub fn blocked_either(&self, a: &Uuid, b: &Uuid) -> Result<bool, StoreError> {
        Ok(self.blocks(a, b)? || self.blocks(b, a)?)
    }
}

/// Visits every row of one partition, reading it in pages: partitions such as a popular
/// author's followers are too large to read at once.
pub(crate) fn for_each_row(
    store: &dyn StateStore,
    table: &str,
    pk: &[u8],
    mut visit: impl FnMut(&crate::store::Row) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    const PAGE: usize = 4_096;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let range = after
            .as_deref()
            .map_or_else(crate::store::CkRange::all, crate::store::CkRange::after);
        let rows = store.scan(table, pk, &range, crate::store::Order::Asc, PAGE)?;
        for r in &rows {
            visit(r)?;
        }
        if rows.len() < PAGE {
            return Ok(());
        }
        after = rows.last().map(|r| r.ck.to_vec());
    }
}

/// An item document from the store.
pub fn read_item(store: &dyn StateStore, id: &Uuid) -> Result<Option<ItemDoc>, StoreError> {
    Ok(store
        .get(tables::ITEMS, id.as_bytes(), b"")?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

impl Processor for SocialProcessor {
    fn name(&self) -> &'static str {
        JOB
    }

    fn tables(&self) -> &'static [&'static str] {
        tables::ALL
    }

    fn take_facts(&mut self) -> Vec<Fact> {
        std::mem::take(&mut self.facts)
    }

    fn reset(&mut self) {
        self.facts.clear();
        self.users.clear();
        self.feeds.clear();
        self.author_item_floors.clear();
        self.follower_lists.clear();
        self.notify = notify::NotifyCache::default();
    }

    fn begin_step(&mut self, committed: &Arc<dyn StateStore>) {
        self.feeds.begin_step(committed);
    }

    fn sharded_tables(&self) -> &'static [&'static str] {
        tables::PER_USER
    }

    fn row_owner(&self, table: &str, pk: &[u8], ck: &[u8]) -> Option<Uuid> {
        row_owner(table, pk, ck)
    }

    fn set_shards(&mut self, shards: Arc<Shards>) {
        self.shards = shards;
    }

    fn apply(
        &mut self,
        store: &dyn StateStore,
        delivery: &Delivery<'_>,
        batch: &mut WriteBatch,
    ) -> Result<Outcome, StoreError> {
        let env = delivery.envelope;
        let mut ctx = Ctx {
            store,
            batch,
            env,
            counters: HashMap::new(),
            facts: Vec::new(),
        };
        // Nothing an erased account did after its erasure counts.
        if !matches!(env.action, Action::UserRegistered(_))
            && self.user_state(&ctx, &env.actor_id)? == Some(true)
        {
            return fail(reason::ACCOUNT_ERASED);
        }
        let outcome = match &env.action {
            Action::UserRegistered(a) => content::user_registered(&mut ctx, a),
            Action::ProfileUpdated(a) => content::profile_updated(&mut ctx, a),
            Action::ResumeUpdated(a) => content::resume_updated(&mut ctx, a),
            Action::ImageUploaded(a) => content::image_uploaded(&mut ctx, a),
            Action::FollowCreated(a) => graph::follow(self, &mut ctx, &a.user_id),
            Action::FollowRemoved(a) => graph::unfollow(self, &mut ctx, &a.user_id),
            Action::BlockCreated(a) => graph::block(self, &mut ctx, &a.user_id),
            Action::BlockRemoved(a) => graph::unblock(&mut ctx, &a.user_id),
            Action::PostCreated(_) => content::post_created(self, &mut ctx),
            Action::PostEdited(a) => content::edit(&mut ctx, &a.post_id, docs::ItemKind::Post),
            Action::PostDeleted(a) => {
                content::delete(self, &mut ctx, &a.post_id, docs::ItemKind::Post)
            }
            Action::ApproachCreated(a) => content::approach_created(self, &mut ctx, a),
            Action::ApproachEdited(a) => {
                content::edit(&mut ctx, &a.approach_id, docs::ItemKind::Approach)
            }
            Action::ApproachDeleted(a) => {
                content::delete(self, &mut ctx, &a.approach_id, docs::ItemKind::Approach)
            }
            Action::CommentCreated(a) => content::comment_created(self, &mut ctx, a),
            Action::CommentDeleted(a) => content::comment_deleted(&mut ctx, a),
            Action::ReactionAdded(a) => {
                content::reaction(self, &mut ctx, &a.target_id, a.kind, true)
            }
            Action::ReactionRemoved(a) => {
                content::reaction(self, &mut ctx, &a.target_id, a.kind, false)
            }
            Action::DonationMade(a) => content::donation(self, &mut ctx, a),
            Action::CampaignCreated(a) => content::campaign_created(self, &mut ctx, a),
            Action::CampaignClosed(a) => content::campaign_closed(&mut ctx, a),
            Action::EventCreated(_) => content::event_created(self, &mut ctx),
            Action::EventUpdated(a) => content::event_updated(self, &mut ctx, &a.event_id),
            Action::EventCancelled(a) => content::event_cancelled(self, &mut ctx, a),
            Action::EventRsvp(a) => content::rsvp(&mut ctx, a),
            Action::JobOfferCreated(a) => content::offer_created(self, &mut ctx, a),
            Action::JobOfferAnswered(a) => content::offer_answered(self, &mut ctx, a),
            Action::JobOfferWithdrawn(a) => content::offer_withdrawn(&mut ctx, a),
            Action::AccountErased(_) => graph::erase(self, &mut ctx),
            Action::NotificationsRead(a) => notify::mark_read(&mut ctx, &a.up_to),
            Action::NotificationPreferencesUpdated(a) => notify::set_preferences(self, &mut ctx, a),
            // Sessions and explore signals feed other jobs (lake, recommender), not these views.
            Action::UserLoggedIn(_)
            | Action::UserLoggedOut(_)
            | Action::ExploreViewed(_)
            | Action::ExploreClicked(_)
            | Action::ExploreDismissed(_) => Ok(Outcome::Applied),
        }?;
        match outcome {
            Outcome::Applied => {
                ctx.flush_counters();
                self.facts.append(&mut ctx.facts);
                if matches!(env.action, Action::UserRegistered(_)) {
                    // Re-read on next use (through the step's staged writes).
                    self.users.remove(&env.actor_id);
                }
            }
            Outcome::Failed(_) => {
                ctx.batch.mutations.clear();
                ctx.batch.lanes.clear();
            }
        }
        Ok(outcome)
    }
}
