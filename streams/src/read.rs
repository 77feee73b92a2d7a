//! The read side of the social views: what the read endpoints answer.
//!
//! Every list is cursor-paginated: a page carries `next_cursor` (opaque, URL-safe) when more
//! rows follow. Reads are synchronous store reads (microseconds on the embedded store); async
//! callers run them on the blocking pool.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::job::CommitListener;
use crate::social::content::{
    APPROACHES_STAT, COMMENTS_STAT, DONATIONS_STAT, REACTIONS_STAT, RECEIVED_BOX, SENT_BOX,
};
use crate::social::docs::{ItemDoc, ItemKind, ItemState, UserDoc};
use crate::social::graph::{FOLLOWERS_STAT, FOLLOWING_STAT};
use crate::social::{SocialConfig, keys, read_item, tables};
use crate::store::{CkRange, Order, StateStore, StoreError};

/// Most rows one page may ask for.
pub const MAX_LIMIT: usize = 100;

/// Rows a feed read takes beyond a page (and the one that tells whether more follow) in one
/// round, for deleted items it skips; more rounds follow when they were not enough.
const FEED_ROUND_SLACK: usize = 8;

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("invalid cursor: pass back the `next_cursor` of the previous page unchanged")]
    InvalidCursor,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Counters of one item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ItemStats {
    pub reactions: i64,
    pub comments: i64,
    pub approaches: i64,
    pub donations: i64,
}

/// A content item as readers see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Item {
    pub id: Uuid,
    pub kind: ItemKind,
    pub author_id: Uuid,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    pub state: ItemState,
    /// The post of an approach; the target of a comment or campaign.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Uuid>,
    /// The kind's fields as submitted, edits applied (title, body, tags, starts_at …): the
    /// stored JSON object, passed through without being parsed into a tree and written again
    /// (on a feed page that was most of a read's CPU).
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
    pub stats: ItemStats,
}

impl Item {
    /// `data` as a JSON tree.
    pub fn fields(&self) -> Map<String, Value> {
        serde_json::from_str(self.data.get()).unwrap_or_default()
    }
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.kind == other.kind
            && self.author_id == other.author_id
            && self.created_at == other.created_at
            && self.edited_at == other.edited_at
            && self.state == other.state
            && self.parent_id == other.parent_id
            && self.data.get() == other.data.get()
            && self.stats == other.stats
    }
}

/// A stored [`ItemDoc`] as the read side decodes it: `data` borrowed as raw JSON. Reads the
/// same documents as `ItemDoc` (its other fields, `pushed`, are the job's and ignored here).
#[derive(Deserialize)]
struct StoredItem<'a> {
    id: Uuid,
    kind: ItemKind,
    author: Uuid,
    created_at: DateTime<Utc>,
    #[serde(default)]
    edited_at: Option<DateTime<Utc>>,
    state: ItemState,
    #[serde(default)]
    parent: Option<Uuid>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// A user in a follower/following list.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UserSummary {
    pub user_id: Uuid,
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// A user's profile.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Profile {
    pub user_id: Uuid,
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub skills: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_image_id: Option<Uuid>,
    pub image_ids: Vec<Uuid>,
    pub followers: i64,
    pub following: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<DateTime<Utc>>,
}

/// A post with a page of its approaches and a page of its comments.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Thread {
    pub item: Item,
    pub approaches: Page<Item>,
    pub comments: Page<Item>,
}

/// An event with RSVP counts and the caller's own RSVP.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EventView {
    pub item: Item,
    pub going: i64,
    pub interested: i64,
    pub not_going: i64,
    /// The caller's RSVP status, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub my_rsvp: Option<String>,
    pub comments: Page<Item>,
}

/// A campaign with its exact totals per currency (minor units).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CampaignView {
    pub item: Item,
    pub goal_minor: i64,
    pub currency: String,
    /// Raised so far in the campaign's currency, minor units.
    pub raised_minor: i64,
    pub goal_reached: bool,
}

/// Which job-offer box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferBox {
    Received,
    Sent,
}

/// The read side of the social job.
#[derive(Clone)]
pub struct SocialViews {
    store: Arc<dyn StateStore>,
    config: SocialConfig,
    items: Arc<ItemCache>,
}

/// Items as readers see them (document and counters, or their absence), as last read from the
/// store: a feed page is otherwise 50 document reads and 50 counter scans, most of a read's
/// CPU (`philo bench feed`). It never serves an item older than the store once a step's
/// positions are published: the social job drops every item whose document or counters a step
/// wrote, after the step's batch is in the store and before readers learn of its positions
/// ([`CommitListener`], installed by [`crate::runtime::Streams`]); and a read caches what it
/// read only if no step committed since it looked the item up (an epoch, bumped with every
/// drop under the same lock). Bounded: when full it starts over empty.
///
/// Hand-written: the invalidation protocol is the job's; a generic cache crate would add a
/// dependency for a map and a counter.
pub struct ItemCache {
    inner: std::sync::Mutex<CacheInner>,
    capacity: usize,
}

#[derive(Default)]
struct CacheInner {
    items: std::collections::HashMap<Uuid, Option<Item>>,
    epoch: u64,
}

impl ItemCache {
    /// A cache of at most `capacity` items (0: nothing is cached).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: std::sync::Mutex::new(CacheInner::default()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached item (`Some(None)`: cached as missing or deleted), or the epoch to pass to
    /// [`Self::insert`] with what the store holds.
    fn lookup(&self, id: &Uuid) -> Result<Option<Item>, u64> {
        let inner = self.lock();
        match inner.items.get(id) {
            Some(item) => Ok(item.clone()),
            None => Err(inner.epoch),
        }
    }

    /// Caches `item` as read from the store after a lookup that returned `epoch`, unless a step
    /// committed since (it may have changed the item after the read).
    fn insert(&self, id: Uuid, item: Option<Item>, epoch: u64) {
        let mut inner = self.lock();
        if inner.epoch != epoch || self.capacity == 0 {
            return;
        }
        if inner.items.len() >= self.capacity {
            inner.items.clear();
        }
        inner.items.insert(id, item);
    }

    /// Forgets `ids`; lookups from before this call no longer insert.
    pub fn invalidate(&self, ids: impl IntoIterator<Item = Uuid>) {
        let mut inner = self.lock();
        for id in ids {
            inner.items.remove(&id);
        }
        inner.epoch += 1;
    }

    /// Forgets everything.
    pub fn invalidate_all(&self) {
        let mut inner = self.lock();
        inner.items.clear();
        inner.epoch += 1;
    }

    /// Items cached now.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CommitListener for ItemCache {
    fn tables(&self) -> &[&'static str] {
        &[tables::ITEMS, tables::ITEM_STATS]
    }

    fn committed(&self, written: &[(&'static str, bytes::Bytes)]) {
        // Both tables are keyed by the item's id.
        self.invalidate(
            written
                .iter()
                .filter_map(|(_, pk)| Uuid::from_slice(pk).ok()),
        );
    }
}

fn encode_cursor(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Longest cursor accepted, characters; the cursors handed out are far shorter.
pub const MAX_CURSOR_CHARS: usize = 512;

fn decode_cursor(s: &str) -> Result<Vec<u8>, ReadError> {
    if s.len() > MAX_CURSOR_CHARS {
        return Err(ReadError::InvalidCursor);
    }
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| ReadError::InvalidCursor)
}

impl SocialViews {
    pub fn new(store: Arc<dyn StateStore>, config: SocialConfig) -> Self {
        let items = Arc::new(ItemCache::new(config.read_cache_items));
        Self {
            store,
            config,
            items,
        }
    }

    /// The item cache, for the job to invalidate ([`crate::job::Job::on_commit`]). Reads that
    /// bypass the job (a store another process writes) must not use a capacity above 0.
    pub fn item_cache(&self) -> Arc<ItemCache> {
        self.items.clone()
    }

    /// An item's counters: one scan of its partition (on the LSM store cheaper than a point
    /// read per counter: each point read searches every memtable).
    fn stats(&self, id: &Uuid) -> Result<ItemStats, StoreError> {
        let rows = self.store.scan(
            tables::ITEM_STATS,
            id.as_bytes(),
            &CkRange::all(),
            Order::Asc,
            16,
        )?;
        let mut s = ItemStats::default();
        for r in rows {
            let v = keys::decode_i64(&r.value);
            match r.ck.as_ref() {
                x if x == REACTIONS_STAT.as_bytes() => s.reactions = v,
                x if x == COMMENTS_STAT.as_bytes() => s.comments = v,
                x if x == APPROACHES_STAT.as_bytes() => s.approaches = v,
                x if x == DONATIONS_STAT.as_bytes() => s.donations = v,
                _ => {}
            }
        }
        Ok(s)
    }

    fn item_of(&self, doc: ItemDoc) -> Result<Item, StoreError> {
        let stats = self.stats(&doc.id)?;
        Ok(Item {
            id: doc.id,
            kind: doc.kind,
            author_id: doc.author,
            created_at: doc.created_at,
            edited_at: doc.edited_at,
            state: doc.state,
            parent_id: doc.parent,
            data: serde_json::value::to_raw_value(&doc.data).expect("a JSON map serialises"),
            stats,
        })
    }

    /// The item `id` as readers see it, unless missing or deleted: the list reads' path, from
    /// the [`ItemCache`] or the store.
    fn live_item(&self, id: &Uuid) -> Result<Option<Item>, StoreError> {
        match self.items.lookup(id) {
            Ok(cached) => Ok(cached),
            Err(epoch) => {
                let item = self.stored_item(id)?;
                self.items.insert(*id, item.clone(), epoch);
                Ok(item)
            }
        }
    }

    /// [`Self::live_item`] from the store: decodes the stored document without building its
    /// `data` tree.
    fn stored_item(&self, id: &Uuid) -> Result<Option<Item>, StoreError> {
        let Some(bytes) = self.store.get(tables::ITEMS, id.as_bytes(), b"")? else {
            return Ok(None);
        };
        // As `read_item`: a document that does not decode reads as absent.
        let Ok(doc) = serde_json::from_slice::<StoredItem<'_>>(&bytes) else {
            return Ok(None);
        };
        if doc.state == ItemState::Deleted {
            return Ok(None);
        }
        Ok(Some(Item {
            id: doc.id,
            kind: doc.kind,
            author_id: doc.author,
            created_at: doc.created_at,
            edited_at: doc.edited_at,
            state: doc.state,
            parent_id: doc.parent,
            data: doc.data.to_owned(),
            stats: self.stats(&doc.id)?,
        }))
    }

    /// A live item of `kind`.
    fn live(&self, id: &Uuid, kind: ItemKind, what: &'static str) -> Result<ItemDoc, ReadError> {
        match read_item(&*self.store, id)? {
            Some(d) if d.kind == kind && d.state != ItemState::Deleted => Ok(d),
            _ => Err(ReadError::NotFound(what)),
        }
    }

    /// `user`'s home feed, newest first: their pushed feed merged with the recent items of the
    /// pulled authors they follow; capped at `feed_cap` items in all.
    pub fn feed(
        &self,
        user: &Uuid,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Item>, ReadError> {
        // Cursor: desc(last item id) ++ items served so far (u32 BE).
        let (after, served) = match cursor {
            None => (None, 0usize),
            Some(c) => {
                let b = decode_cursor(c)?;
                if b.len() != 20 {
                    return Err(ReadError::InvalidCursor);
                }
                let served = u32::from_be_bytes(b[16..20].try_into().expect("4 bytes")) as usize;
                (Some(b[..16].to_vec()), served)
            }
        };
        let limit = limit.min(self.config.feed_cap.saturating_sub(served));
        if limit == 0 {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let pulled = self.store.scan(
            tables::PULLED,
            user.as_bytes(),
            &CkRange::all(),
            Order::Asc,
            usize::MAX,
        )?;
        // Rows are read in rounds of a little more than a page (deleted items are skipped) from
        // the pushed feed and each pulled author's list, merged by key. A source that filled
        // its round may hold more rows below its last one, so a round uses its rows only up to
        // the lowest such last row (the horizon) and the next round starts after it.
        let round = limit + 1 + FEED_ROUND_SLACK;
        let mut range = after.as_deref().map_or_else(CkRange::all, CkRange::after);
        let mut items = Vec::with_capacity(limit);
        let mut last: Option<Vec<u8>> = None;
        let mut more = false;
        'rounds: loop {
            let mut rows: Vec<Vec<u8>> = Vec::new();
            let mut horizon: Option<Vec<u8>> = None;
            let sources = std::iter::once((tables::FEED, user.as_bytes().as_slice()))
                .chain(pulled.iter().map(|a| (tables::AUTHOR_ITEMS, a.ck.as_ref())));
            for (table, pk) in sources {
                let got = self.store.scan(table, pk, &range, Order::Asc, round)?;
                if got.len() == round
                    && let Some(end) = got.last()
                    && horizon.as_deref().is_none_or(|h| end.ck.as_ref() < h)
                {
                    horizon = Some(end.ck.to_vec());
                }
                rows.extend(got.into_iter().map(|r| r.ck.to_vec()));
            }
            rows.sort_unstable();
            rows.dedup();
            if let Some(h) = &horizon {
                rows.retain(|r| r <= h);
            }
            for ck in rows {
                if items.len() == limit {
                    more = true;
                    break 'rounds;
                }
                let Some(id) = keys::undesc(&ck) else {
                    continue;
                };
                last = Some(ck);
                if let Some(item) = self.live_item(&id)? {
                    items.push(item);
                }
            }
            match horizon {
                Some(h) => range = CkRange::after(&h),
                None => break,
            }
        }
        let served = served + items.len();
        let next_cursor = match (more && served < self.config.feed_cap, last) {
            (true, Some(mut ck)) => {
                ck.extend_from_slice(&(served as u32).to_be_bytes());
                Some(encode_cursor(&ck))
            }
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    fn user_doc(&self, id: &Uuid) -> Result<Option<UserDoc>, StoreError> {
        Ok(self
            .store
            .get(tables::USERS, id.as_bytes(), b"")?
            .and_then(|b| serde_json::from_slice::<UserDoc>(&b).ok())
            .filter(|u| !u.erased))
    }

    fn stat(&self, user: &Uuid, stat: &str) -> Result<i64, StoreError> {
        Ok(self
            .store
            .get(tables::USER_STATS, user.as_bytes(), stat.as_bytes())?
            .map_or(0, |b| keys::decode_i64(&b)))
    }

    /// A user's profile with follower and following counts.
    pub fn profile(&self, user: &Uuid) -> Result<Profile, ReadError> {
        let doc = self.user_doc(user)?.ok_or(ReadError::NotFound("user"))?;
        Ok(Profile {
            user_id: *user,
            username: doc.username,
            display_name: doc.display_name,
            description: doc.description,
            skills: doc.skills,
            avatar_image_id: doc.avatar_image_id,
            image_ids: doc.image_ids,
            followers: self.stat(user, FOLLOWERS_STAT)?,
            following: self.stat(user, FOLLOWING_STAT)?,
            registered_at: doc.registered_at,
        })
    }

    fn user_page(
        &self,
        table: &str,
        user: &Uuid,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<UserSummary>, ReadError> {
        if self.user_doc(user)?.is_none() {
            return Err(ReadError::NotFound("user"));
        }
        let range = match cursor {
            None => CkRange::all(),
            Some(c) => CkRange::after(&decode_cursor(c)?),
        };
        let rows = self
            .store
            .scan(table, user.as_bytes(), &range, Order::Asc, limit + 1)?;
        let more = rows.len() > limit;
        let mut items = Vec::with_capacity(limit);
        for r in rows.iter().take(limit) {
            let Some(other) = keys::uuid_at(&r.ck, 16) else {
                continue;
            };
            let doc = self.user_doc(&other)?.unwrap_or_default();
            items.push(UserSummary {
                user_id: other,
                username: doc.username,
                display_name: doc.display_name,
            });
        }
        let next_cursor = more
            .then(|| rows.get(limit - 1).map(|r| encode_cursor(&r.ck)))
            .flatten();
        Ok(Page { items, next_cursor })
    }

    /// Who follows `user`, newest follow first.
    pub fn followers(
        &self,
        user: &Uuid,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<UserSummary>, ReadError> {
        self.user_page(tables::FOLLOWERS, user, cursor, limit)
    }

    /// Whom `user` follows, newest follow first.
    pub fn following(
        &self,
        user: &Uuid,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<UserSummary>, ReadError> {
        self.user_page(tables::FOLLOWING, user, cursor, limit)
    }

    /// Children of `parent` of one kind, oldest first (threads read top-down).
    fn children(
        &self,
        parent: &Uuid,
        kind: ItemKind,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Item>, ReadError> {
        self.item_page(
            tables::CHILDREN,
            parent,
            kind.byte(),
            cursor,
            limit,
            |rest| keys::uuid_at(rest, 0),
        )
    }

    /// A page of live items listed in one partition under a one-byte prefix (`prefix ++ rest`,
    /// where `id_of(rest)` is the item's id); the cursor is the last row's `rest`.
    fn item_page(
        &self,
        table: &str,
        pk: &Uuid,
        prefix: u8,
        cursor: Option<&str>,
        limit: usize,
        id_of: fn(&[u8]) -> Option<Uuid>,
    ) -> Result<Page<Item>, ReadError> {
        let mut range = CkRange::prefix(&[prefix]);
        if let Some(c) = cursor {
            let mut start = vec![prefix];
            start.extend_from_slice(&decode_cursor(c)?);
            range.start = std::ops::Bound::Excluded(start);
        }
        let rows = self
            .store
            .scan(table, pk.as_bytes(), &range, Order::Asc, limit + 1)?;
        let more = rows.len() > limit;
        let mut items = Vec::with_capacity(limit);
        for r in rows.iter().take(limit) {
            if let Some(id) = id_of(&r.ck[1..])
                && let Some(item) = self.live_item(&id)?
            {
                items.push(item);
            }
        }
        let next_cursor = more
            .then(|| rows.get(limit - 1).map(|r| encode_cursor(&r.ck[1..])))
            .flatten();
        Ok(Page { items, next_cursor })
    }

    /// A post with its approaches and comments (each paginated by its own cursor).
    pub fn post(
        &self,
        id: &Uuid,
        approaches_cursor: Option<&str>,
        comments_cursor: Option<&str>,
        limit: usize,
    ) -> Result<Thread, ReadError> {
        let doc = self.live(id, ItemKind::Post, "post")?;
        Ok(Thread {
            item: self.item_of(doc)?,
            approaches: self.children(id, ItemKind::Approach, approaches_cursor, limit)?,
            comments: self.children(id, ItemKind::Comment, comments_cursor, limit)?,
        })
    }

    /// An approach with its comments.
    pub fn approach(
        &self,
        id: &Uuid,
        comments_cursor: Option<&str>,
        limit: usize,
    ) -> Result<Thread, ReadError> {
        let doc = self.live(id, ItemKind::Approach, "approach")?;
        Ok(Thread {
            item: self.item_of(doc)?,
            approaches: Page {
                items: Vec::new(),
                next_cursor: None,
            },
            comments: self.children(id, ItemKind::Comment, comments_cursor, limit)?,
        })
    }

    /// An event with RSVP counts and `viewer`'s own RSVP.
    pub fn event(
        &self,
        id: &Uuid,
        viewer: &Uuid,
        comments_cursor: Option<&str>,
        limit: usize,
    ) -> Result<EventView, ReadError> {
        let doc = self.live(id, ItemKind::Event, "event")?;
        let count = |stat: &str| -> Result<i64, StoreError> {
            Ok(self
                .store
                .get(tables::ITEM_STATS, id.as_bytes(), stat.as_bytes())?
                .map_or(0, |b| keys::decode_i64(&b)))
        };
        let my_rsvp = self
            .store
            .get(tables::RSVPS, id.as_bytes(), viewer.as_bytes())?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        Ok(EventView {
            going: count("rsvp_going")?,
            interested: count("rsvp_interested")?,
            not_going: count("rsvp_not_going")?,
            my_rsvp,
            comments: self.children(id, ItemKind::Comment, comments_cursor, limit)?,
            item: self.item_of(doc)?,
        })
    }

    /// A campaign with its exact total.
    pub fn campaign(&self, id: &Uuid) -> Result<CampaignView, ReadError> {
        let doc = self.live(id, ItemKind::Campaign, "campaign")?;
        let currency = doc
            .data
            .get("currency")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let goal_minor = doc
            .data
            .get("goal_minor")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let raised_minor = self
            .store
            .get(tables::DONATION_TOTALS, id.as_bytes(), currency.as_bytes())?
            .map_or(0, |b| keys::decode_i64(&b));
        Ok(CampaignView {
            goal_reached: raised_minor >= goal_minor,
            goal_minor,
            currency,
            raised_minor,
            item: self.item_of(doc)?,
        })
    }

    /// Job offers `user` received or sent, newest first, with their state.
    pub fn job_offers(
        &self,
        user: &Uuid,
        which: OfferBox,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Item>, ReadError> {
        let b = match which {
            OfferBox::Received => RECEIVED_BOX,
            OfferBox::Sent => SENT_BOX,
        };
        // Offers are never deleted, so the page holds every offer with its state.
        self.item_page(tables::OFFER_BOXES, user, b, cursor, limit, keys::undesc)
    }
}

/// A user as shown inside a notification.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Actor {
    pub user_id: Uuid,
    pub username: String,
}

/// A notification as its recipient reads it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct NotificationView {
    /// Time-ordered id (of the latest action behind it); pass it to mark-read and as SSE
    /// `Last-Event-ID`.
    pub id: Uuid,
    /// `new_follower`, `approach_on_post`, `comment_on_post`, `comment_on_approach`,
    /// `comment_on_event`, `reply`, `reaction`, `donation`, `campaign_goal_reached`,
    /// `job_offer_received`, `job_offer_accepted`, `job_offer_declined`, `event_updated`,
    /// `event_cancelled`, `mention`, `post_by_followed`.
    pub kind: String,
    /// The most recent actors (up to 3); `actor_count` counts all ("A and 4 others").
    pub actors: Vec<Actor>,
    pub actor_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub read: bool,
}

/// Most notifications counted as unread (the count reads "1000+" beyond).
pub const UNREAD_COUNT_CAP: usize = 1_000;

impl SocialViews {
    fn notification_view(
        &self,
        n: crate::social::notify::Notification,
        marker: Option<Uuid>,
    ) -> Result<NotificationView, StoreError> {
        let mut actors = Vec::new();
        for a in n.actors.iter().take(crate::social::notify::ACTORS_SHOWN) {
            actors.push(Actor {
                user_id: *a,
                username: self.user_doc(a)?.map(|u| u.username).unwrap_or_default(),
            });
        }
        Ok(NotificationView {
            read: marker.is_some_and(|m| n.id <= m),
            id: n.id,
            kind: n.kind,
            actors,
            actor_count: n.actor_count,
            target_id: n.target_id,
            subject_id: n.subject_id,
            data: n.data,
            created_at: n.created_at,
            updated_at: n.updated_at,
        })
    }

    /// `user`'s notifications, newest first.
    pub fn notifications(
        &self,
        user: &Uuid,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<NotificationView>, ReadError> {
        let range = match cursor {
            None => CkRange::all(),
            Some(c) => CkRange::after(&decode_cursor(c)?),
        };
        let rows = self.store.scan(
            tables::NOTIFICATIONS,
            user.as_bytes(),
            &range,
            Order::Asc,
            limit + 1,
        )?;
        let marker = crate::social::notify::read_marker(&*self.store, user)?;
        let more = rows.len() > limit;
        let mut items = Vec::with_capacity(limit);
        for r in rows.iter().take(limit) {
            if let Ok(n) = serde_json::from_slice(&r.value) {
                items.push(self.notification_view(n, marker)?);
            }
        }
        let next_cursor = more
            .then(|| rows.get(limit - 1).map(|r| encode_cursor(&r.ck)))
            .flatten();
        Ok(Page { items, next_cursor })
    }

    /// How many notifications are newer than the read marker (at most [`UNREAD_COUNT_CAP`]).
    pub fn unread_count(&self, user: &Uuid) -> Result<usize, ReadError> {
        let marker = crate::social::notify::read_marker(&*self.store, user)?;
        let range = match marker {
            // Rows sort newest first; unread ones come before the marker's key.
            Some(m) => CkRange::before(&keys::desc(&m)),
            None => CkRange::all(),
        };
        Ok(self
            .store
            .scan(
                tables::NOTIFICATIONS,
                user.as_bytes(),
                &range,
                Order::Asc,
                UNREAD_COUNT_CAP,
            )?
            .len())
    }

    /// Notifications newer than `after` (all retained ones when `None`), oldest first, at
    /// most `limit`: what a live stream sends next.
    pub fn notifications_since(
        &self,
        user: &Uuid,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<NotificationView>, ReadError> {
        let range = match after {
            Some(a) => CkRange::before(&keys::desc(&a)),
            None => CkRange::all(),
        };
        let rows = self.store.scan(
            tables::NOTIFICATIONS,
            user.as_bytes(),
            &range,
            Order::Desc,
            limit,
        )?;
        let marker = crate::social::notify::read_marker(&*self.store, user)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            if let Ok(n) = serde_json::from_slice(&r.value) {
                out.push(self.notification_view(n, marker)?);
            }
        }
        Ok(out)
    }

    /// `user`'s notification preferences, `{type: on}`.
    pub fn notification_preferences(&self, user: &Uuid) -> Result<Map<String, Value>, ReadError> {
        let mask = crate::social::notify::read_preferences(&*self.store, user)?;
        Ok(crate::social::notify::preferences_map(mask))
    }
}

/// Engagement with one item in one hour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct EngagementHour {
    /// Start of the hour.
    pub hour: DateTime<Utc>,
    pub reactions: i64,
    pub comments: i64,
    pub approaches: i64,
    pub donations: i64,
}

impl SocialViews {
    /// Hourly engagement with `item` (reactions, comments, approaches, donations added), newest
    /// hour first, at most `hours` hours that had any.
    pub fn engagement(&self, item: &Uuid, hours: usize) -> Result<Vec<EngagementHour>, ReadError> {
        // Rows sort by hour ascending; read from the end. Four stats per hour at most.
        let rows = self.store.scan(
            tables::ENGAGEMENT,
            item.as_bytes(),
            &CkRange::all(),
            Order::Desc,
            hours.saturating_mul(4),
        )?;
        let mut out: Vec<EngagementHour> = Vec::new();
        for r in rows {
            let Some(hour) =
                r.ck.get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(i64::from_be_bytes)
            else {
                continue;
            };
            let start = DateTime::from_timestamp(hour.saturating_mul(3600), 0).unwrap_or_default();
            if out.last().is_none_or(|h| h.hour != start) {
                if out.len() == hours {
                    break;
                }
                out.push(EngagementHour {
                    hour: start,
                    ..EngagementHour::default()
                });
            }
            let h = out.last_mut().expect("pushed above");
            let v = keys::decode_i64(&r.value);
            match &r.ck[8..] {
                x if x == REACTIONS_STAT.as_bytes() => h.reactions = v,
                x if x == COMMENTS_STAT.as_bytes() => h.comments = v,
                x if x == APPROACHES_STAT.as_bytes() => h.approaches = v,
                x if x == DONATIONS_STAT.as_bytes() => h.donations = v,
                _ => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    fn item(id: Uuid, title: &str) -> Item {
        Item {
            id,
            kind: ItemKind::Post,
            author_id: Uuid::nil(),
            created_at: DateTime::<Utc>::MIN_UTC,
            edited_at: None,
            state: ItemState::Open,
            parent_id: None,
            data: serde_json::value::to_raw_value(&serde_json::json!({"title": title})).unwrap(),
            stats: ItemStats::default(),
        }
    }

    #[test]
    fn a_read_that_raced_a_commit_is_not_cached() {
        let cache = ItemCache::new(10);
        let id = Uuid::now_v7();
        let epoch = cache.lookup(&id).unwrap_err();
        // A step commits between the reader's store read and its insert: what the reader
        // read may predate the step.
        cache.invalidate([Uuid::now_v7()]);
        cache.insert(id, Some(item(id, "old")), epoch);
        assert!(cache.lookup(&id).is_err(), "a stale read was cached");
        let epoch = cache.lookup(&id).unwrap_err();
        cache.insert(id, Some(item(id, "new")), epoch);
        assert_eq!(cache.lookup(&id).unwrap().unwrap().fields()["title"], "new");
        cache.invalidate([id]);
        assert!(cache.lookup(&id).is_err());
    }

    #[test]
    fn the_cache_stays_within_its_capacity_and_zero_turns_it_off() {
        let cache = ItemCache::new(3);
        for _ in 0..10 {
            let id = Uuid::now_v7();
            let epoch = cache.lookup(&id).unwrap_err();
            cache.insert(id, None, epoch);
            assert!(cache.len() <= 3);
        }
        let off = ItemCache::new(0);
        let id = Uuid::now_v7();
        let epoch = off.lookup(&id).unwrap_err();
        off.insert(id, None, epoch);
        assert!(off.is_empty());
    }
}
