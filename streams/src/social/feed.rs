//! Home feeds with hybrid fan-out.
//!
//! A new feed item (post, approach, event, public job offer, campaign) goes into the author's
//! own feed and the author's recent-items list, and is pushed into every follower's feed —
//! unless the author has at least `pull_threshold` followers: such authors are pulled and
//! merged at read time instead (see [`crate::read`]), so one author's post costs at most
//! `pull_threshold` writes and cannot stall delivery for everyone else.
//!
//! Feeds are capped: once a feed holds more than `feed_cap` plus a slack of 1/8, its oldest rows
//! are deleted down to `feed_cap` (trimming in steps keeps the per-delivery cost flat). A user
//! who follows very many accounts therefore costs bounded storage however much they receive.
//!
//! Trimming deletes the oldest rows, which sort last; in the LSM store their tombstones stay
//! until compaction, so a scan for "the oldest rows" from the end would walk every tombstone
//! of every earlier trim (quadratic in the feed's history, and most of the job's CPU once
//! feeds are full). The processor therefore keeps, per list, a *floor*: a clustering key above
//! which no row of that list is live (see [`Floors`]); the trim scan starts at it.

use bytes::Bytes;
use uuid::Uuid;

use super::docs::{ItemDoc, ItemKind};
use super::{Ctx, SocialProcessor, keys, tables};
use crate::store::{CkRange, Order, StateStore, StoreError};

pub(crate) const AUTHOR_ITEMS_STAT: &str = "author_items";
/// Bytes of a fan-out's feed row in a lane: a shared put (tag, length-prefixed 16-byte key,
/// 4 bytes back to the item's first row; see `store::lane`).
const FEED_LANE_OP: usize = 1 + 18 + 4;

/// Per user, the clustering key of the oldest row a newest-first list may still hold live:
/// every row with a greater key is deleted (or never existed). Learned by a trim, raised by
/// every insert past it, still valid after deletions; unknown means "scan from the end". A cache
/// of the job's state: cleared on [`crate::job::Processor::reset`], since a failed step's
/// discarded writes may have set it.
#[derive(Debug, Default)]
pub(crate) struct Floors(foldhash::HashMap<Uuid, [u8; 16]>);

/// The range holding every live row of a list whose floor is `floor` (all rows when unknown).
fn live_range(floor: Option<&[u8; 16]>) -> CkRange {
    match floor {
        Some(f) => CkRange {
            start: std::ops::Bound::Unbounded,
            end: std::ops::Bound::Included(f.to_vec()),
        },
        None => CkRange::all(),
    }
}

impl Floors {
    /// The range holding every live row of `user`'s list.
    fn live_range(&self, user: &Uuid) -> CkRange {
        live_range(self.0.get(user))
    }

    /// A row with key `ck` is (or may become) live: the floor, where known, covers it.
    fn raise(&mut self, user: &Uuid, ck: &[u8; 16]) {
        if let Some(f) = self.0.get_mut(user)
            && *ck > *f
        {
            *f = *ck;
        }
    }

    /// After a trim: no row greater than `ck` is live any more.
    fn set(&mut self, user: &Uuid, ck: [u8; 16]) {
        if self.0.len() >= 1_000_000 {
            self.0.clear(); // bounded memory; floors are relearned by the next trims
        }
        self.0.insert(*user, ck);
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

fn slack(cap: usize) -> usize {
    (cap / 8).max(1)
}

/// What the job knows of each home feed it has touched, and of the step being applied: a cache
/// of the job's state, cleared on [`crate::job::Processor::reset`] (a failed step's discarded
/// writes may have changed it) and refilled from the store on a miss.
///
/// Besides a feed's length and [floor](Floors), an entry records what the current step wrote
/// into the feed: the oldest item it put there, and whether it deleted rows other than by a
/// trim. A trim needs the oldest live rows, which a fan-out step has only ever *added newer*
/// rows to; reading them through the step's staged view would index every staged feed row of
/// the step by partition first (a hash insert per delivery — a tenth of a burst step). So when
/// the step put only items newer than the oldest committed rows a trim reads, and deleted only
/// by trims (whose rows lie past the floor), the trim reads the committed store directly:
/// the answer is the same.
#[derive(Default)]
pub(crate) struct Feeds {
    map: foldhash::HashMap<Uuid, FeedState>,
    /// Counts [`Feeds::begin_step`] calls: an entry whose `step` differs has no writes in the
    /// current step.
    step: u64,
    /// The store under the current step's staged writes; `None` outside a runner's step.
    committed: Option<std::sync::Arc<dyn StateStore>>,
    /// Trims that read the committed store.
    committed_trims: u64,
}

struct FeedState {
    /// Exact number of rows, the step's staged ones included.
    len: usize,
    /// No row with a greater clustering key is live (see [`Floors`]); `None`: unknown.
    floor: Option<[u8; 16]>,
    /// The step the next two fields describe.
    step: u64,
    /// The greatest (oldest) clustering key put into the feed in `step`.
    oldest_put: Option<[u8; 16]>,
    /// In `step` the feed may have lost rows other than by a trim, or the entry was made in the
    /// middle of `step` (the step's earlier writes to the feed are unknown).
    unknown: bool,
}

/// Entries kept at most; the map is cleared when full (lengths are recounted on demand).
const FEEDS_MAX: usize = 1_000_000;

impl FeedState {
    fn live_range(&self) -> CkRange {
        live_range(self.floor.as_ref())
    }
}

impl Feeds {
    pub(crate) fn begin_step(&mut self, committed: &std::sync::Arc<dyn StateStore>) {
        self.step += 1;
        self.committed = Some(committed.clone());
    }

    /// Trims that read the committed store instead of the step's staged view.
    pub(crate) fn committed_trims(&self) -> u64 {
        self.committed_trims
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.step += 1;
        self.committed = None;
    }

    /// The range holding every live row of `user`'s feed.
    fn live_range(&self, user: &Uuid) -> CkRange {
        self.map
            .get(user)
            .map_or_else(CkRange::all, FeedState::live_range)
    }

    /// `user`'s entry (see [`feed_state`]).
    fn state(
        &mut self,
        ctx: &Ctx<'_>,
        user: &Uuid,
        cap: usize,
    ) -> Result<&mut FeedState, StoreError> {
        feed_state(&mut self.map, self.step, ctx, user, cap)
    }
}

/// `user`'s feed entry as of step `step`, counting the feed's rows (the step's staged ones
/// included, not this action's) on a miss.
fn feed_state<'a>(
    map: &'a mut foldhash::HashMap<Uuid, FeedState>,
    step: u64,
    ctx: &Ctx<'_>,
    user: &Uuid,
    cap: usize,
) -> Result<&'a mut FeedState, StoreError> {
    if map.len() >= FEEDS_MAX && !map.contains_key(user) {
        map.clear(); // bounded memory
    }
    let s = match map.entry(*user) {
        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => {
            // Feeds never hold more than cap + slack rows, so a bounded scan counts them.
            let len = ctx
                .store
                .scan(
                    tables::FEED,
                    user.as_bytes(),
                    &CkRange::all(),
                    Order::Asc,
                    cap + slack(cap) + 1,
                )?
                .len();
            v.insert(FeedState {
                len,
                floor: None,
                step,
                oldest_put: None,
                unknown: true,
            })
        }
    };
    if s.step != step {
        // First touch in this step: the step has not written this feed.
        s.step = step;
        s.oldest_put = None;
        s.unknown = false;
    }
    Ok(s)
}

/// The `n` oldest live rows of a feed, oldest first, read from the committed store when the
/// current step's writes to the feed cannot change them (see [`Feeds`]); `None` otherwise.
fn committed_oldest(
    committed: Option<&dyn StateStore>,
    s: &FeedState,
    user: &Uuid,
    n: usize,
) -> Result<Option<Vec<crate::store::Row>>, StoreError> {
    let Some(store) = committed else {
        return Ok(None);
    };
    if s.unknown {
        return Ok(None);
    }
    let rows = store.scan(
        tables::FEED,
        user.as_bytes(),
        &s.live_range(),
        Order::Desc,
        n,
    )?;
    // Staged puts (all at or below `oldest_put`) sort before every row read when the last
    // (newest) of them sorts after it; with fewer rows than asked, a staged put could be
    // among the oldest.
    let unaffected = match (s.oldest_put, rows.last()) {
        (None, _) => true,
        (Some(put), Some(last)) => rows.len() == n && last.ck.as_ref() > &put[..],
        (Some(_), None) => false,
    };
    Ok(unaffected.then_some(rows))
}

/// A feed item as delivered: its feed row's clustering key (the item's id, descending) and
/// value (author ++ kind byte), built once for all the feeds it goes to.
pub(crate) struct Entry {
    ck: [u8; 16],
    value: [u8; 17],
}

impl Entry {
    fn new(id: Uuid, author: &Uuid, kind: ItemKind) -> Self {
        let mut value = [0u8; 17];
        value[..16].copy_from_slice(author.as_bytes());
        value[16] = kind.byte();
        Self {
            ck: keys::desc(&id),
            value,
        }
    }
}

/// Writes `items` into `user`'s feed, trimming it to the cap. Items must not already be in the
/// feed.
fn deliver(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    user: &Uuid,
    items: &[Entry],
) -> Result<(), StoreError> {
    if items.is_empty() {
        return Ok(());
    }
    let cap = p.config.feed_cap;
    let Feeds {
        map,
        step,
        committed,
        committed_trims,
    } = &mut p.feeds;
    let committed = committed.as_deref();
    // One lookup for the whole delivery: a fan-out makes one per follower.
    let s = feed_state(map, *step, ctx, user, cap)?;
    let new_len = s.len + items.len();
    let mut evict: Vec<[u8; 16]> = Vec::new();
    if new_len > cap + slack(cap) {
        let excess = new_len - cap;
        // The oldest rows sort last (keys are complemented ids); one more than the excess
        // tells the new floor.
        let oldest = match committed_oldest(committed, s, user, excess + 1)? {
            Some(rows) => {
                *committed_trims += 1;
                rows
            }
            None => ctx.store.scan(
                tables::FEED,
                user.as_bytes(),
                &s.live_range(),
                Order::Desc,
                excess + 1,
            )?,
        };
        let mut candidates: Vec<[u8; 16]> = oldest
            .iter()
            .filter_map(|r| r.ck.as_ref().try_into().ok())
            .chain(items.iter().map(|e| e.ck))
            .collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        // Rows the scan did not reach sort before every scanned one, so the first candidate
        // kept is the oldest live row. None kept: the feed is empty and the old floor holds
        // (but no longer excludes the rows just deleted).
        match candidates.get(excess) {
            Some(&kept) => s.floor = Some(kept),
            None => s.unknown = true,
        }
        candidates.truncate(excess);
        evict = candidates;
    } else if let Some(f) = &mut s.floor {
        for e in items {
            *f = (*f).max(e.ck);
        }
    }
    // Feed rows go into the batch's lane: a fan-out writes thousands of them per post.
    let pk = user.as_bytes();
    for e in items {
        if evict.is_empty() || !evict.contains(&e.ck) {
            ctx.batch.lane_put(tables::FEED, pk, &e.ck, &e.value);
            p.deliveries += 1;
            s.oldest_put = s.oldest_put.max(Some(e.ck));
        }
    }
    for ck in &evict {
        if !items.iter().any(|e| e.ck == *ck) {
            ctx.batch.lane_delete(tables::FEED, pk, ck);
        }
    }
    s.len = new_len - evict.len();
    Ok(())
}

/// A new feed item by the actor: into the author's list, their own feed, and (push mode) every
/// follower's feed. Stores the item's document, recording whether it was pushed.
pub(crate) fn publish(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    doc: &mut ItemDoc,
) -> Result<(), StoreError> {
    let (item, kind) = (doc.id, doc.kind);
    let author = ctx.actor();
    let item_ck = keys::desc(&item);
    ctx.batch.put(
        tables::AUTHOR_ITEMS,
        keys::id(&author),
        Bytes::copy_from_slice(&item_ck),
        Bytes::copy_from_slice(&[kind.byte()]),
    );
    // The new row is live: the floor (see [`Floors`]) must cover it before the scan below.
    p.author_item_floors.raise(&author, &item_ck);
    let n = ctx.add(tables::USER_STATS, &author, AUTHOR_ITEMS_STAT, 1)?;
    let cap = p.config.author_items_cap as i64;
    if n > cap + slack(cap as usize) as i64 {
        let excess = (n - cap) as usize;
        let oldest = ctx.store.scan(
            tables::AUTHOR_ITEMS,
            author.as_bytes(),
            &p.author_item_floors.live_range(&author),
            Order::Desc,
            excess + 1,
        )?;
        let evicted = &oldest[..excess.min(oldest.len())];
        for r in evicted {
            ctx.batch
                .delete(tables::AUTHOR_ITEMS, keys::id(&author), r.ck.clone());
        }
        if let Some(kept) = oldest
            .get(excess)
            .and_then(|r| r.ck.as_ref().try_into().ok())
        {
            p.author_item_floors.set(&author, kept);
        }
        ctx.add(
            tables::USER_STATS,
            &author,
            AUTHOR_ITEMS_STAT,
            -(evicted.len() as i64),
        )?;
    }
    let entry = [Entry::new(item, &author, kind)];
    deliver(p, ctx, &author, &entry)?;
    doc.pushed = !super::graph::is_pulled(ctx, &author)?;
    ctx.put_item(doc);
    if !doc.pushed {
        return Ok(());
    }
    let followers = followers_of(p, ctx, &author)?;
    // One row per follower goes into the lane: room for them at once, not by doubling.
    ctx.batch
        .lane_reserve(tables::FEED, followers.len() * FEED_LANE_OP);
    let mut pushed = 0u64;
    for f in followers.iter() {
        if p.shards.owns_user(f) {
            deliver(p, ctx, f, &entry)?;
            pushed += 1;
        }
    }
    crate::metrics::deliveries(pushed + 1);
    Ok(())
}

/// Authors with at least this many followers keep their follower list in [`FollowerLists`].
const FOLLOWER_LIST_MIN: usize = 256;
/// Follower ids the lists hold at most, all together (16 bytes each).
const FOLLOWER_LISTS_MAX: usize = 4_000_000;

/// The follower lists of authors with many followers, as the store holds them (the step's
/// staged writes included): a cache of the job's state, dropped for an author whenever the job
/// writes one of their follower rows, and entirely on [`crate::job::Processor::reset`]. Fan-out
/// reads each list once instead of scanning the LSM table on every post (a third of a fan-out
/// burst's time went to those scans).
#[derive(Debug, Default)]
pub(crate) struct FollowerLists {
    lists: foldhash::HashMap<Uuid, std::sync::Arc<[Uuid]>>,
    ids: usize,
}

impl FollowerLists {
    /// `author`'s follower rows are about to change.
    pub(crate) fn invalidate(&mut self, author: &Uuid) {
        if let Some(l) = self.lists.remove(author) {
            self.ids -= l.len();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.lists.clear();
        self.ids = 0;
    }
}

/// `author`'s followers, in the store's order.
fn followers_of(
    p: &mut SocialProcessor,
    ctx: &Ctx<'_>,
    author: &Uuid,
) -> Result<std::sync::Arc<[Uuid]>, StoreError> {
    if let Some(l) = p.follower_lists.lists.get(author) {
        return Ok(l.clone());
    }
    let mut list = Vec::new();
    super::for_each_row(ctx.store, tables::FOLLOWERS, author.as_bytes(), |r| {
        if let Some(f) = keys::uuid_at(&r.ck, 16) {
            list.push(f);
        }
        Ok(())
    })?;
    let list: std::sync::Arc<[Uuid]> = list.into();
    if list.len() >= FOLLOWER_LIST_MIN {
        let cache = &mut p.follower_lists;
        if cache.ids + list.len() > FOLLOWER_LISTS_MAX {
            cache.clear(); // bounded memory; lists are read again on demand
        }
        cache.ids += list.len();
        cache.lists.insert(*author, list.clone());
    }
    Ok(list)
}

/// A new follow: copy the followee's most recent items into the follower's feed.
pub(crate) fn backfill(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    follower: &Uuid,
    followee: &Uuid,
) -> Result<(), StoreError> {
    let rows = ctx.store.scan(
        tables::AUTHOR_ITEMS,
        followee.as_bytes(),
        &CkRange::all(),
        Order::Asc,
        p.config.backfill,
    )?;
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        let (Some(id), Some(kind)) = (
            keys::undesc(&r.ck),
            r.value.first().and_then(|b| ItemKind::from_byte(*b)),
        ) else {
            continue;
        };
        // Defensive: never count a row twice.
        if ctx
            .store
            .get(tables::FEED, follower.as_bytes(), &r.ck)?
            .is_none()
        {
            items.push(Entry::new(id, followee, kind));
        }
    }
    deliver(p, ctx, follower, &items)
}

/// Removes every item by `author` from `user`'s feed (unfollow, block).
pub(crate) fn remove_author(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    user: &Uuid,
    author: &Uuid,
) -> Result<(), StoreError> {
    let rows = ctx.store.scan(
        tables::FEED,
        user.as_bytes(),
        &p.feeds.live_range(user),
        Order::Asc,
        usize::MAX,
    )?;
    let mut removed = 0;
    for r in rows {
        if r.value.get(..16) == Some(author.as_bytes().as_slice()) {
            ctx.batch.lane_delete(tables::FEED, user.as_bytes(), &r.ck);
            removed += 1;
        }
    }
    if removed > 0 {
        let s = p.feeds.state(ctx, user, p.config.feed_cap)?;
        s.len = s.len.saturating_sub(removed);
        s.unknown = true;
    }
    Ok(())
}

/// A deleted item leaves the author's list, the author's feed and every follower's feed (only
/// the author's own when it was never pushed: see [`ItemDoc::pushed`]).
pub(crate) fn remove_item(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    doc: &ItemDoc,
) -> Result<(), StoreError> {
    let (author, item) = (&doc.author, &doc.id);
    let ck = keys::desc(item);
    if ctx
        .store
        .get(tables::AUTHOR_ITEMS, author.as_bytes(), &ck)?
        .is_some()
    {
        ctx.batch.delete(
            tables::AUTHOR_ITEMS,
            keys::id(author),
            Bytes::copy_from_slice(&ck),
        );
        ctx.add(tables::USER_STATS, author, AUTHOR_ITEMS_STAT, -1)?;
    }
    let remove_from = |p: &mut SocialProcessor, ctx: &mut Ctx<'_>, user: &Uuid| {
        if ctx.store.get(tables::FEED, user.as_bytes(), &ck)?.is_some() {
            ctx.batch.lane_delete(tables::FEED, user.as_bytes(), &ck);
            let s = p.feeds.state(ctx, user, p.config.feed_cap)?;
            s.len = s.len.saturating_sub(1);
            s.unknown = true;
        }
        Ok::<(), StoreError>(())
    };
    remove_from(p, ctx, author)?;
    if !doc.pushed {
        return Ok(());
    }
    let followers = ctx.store.scan(
        tables::FOLLOWERS,
        author.as_bytes(),
        &CkRange::all(),
        Order::Asc,
        usize::MAX,
    )?;
    for r in followers {
        if let Some(f) = keys::uuid_at(&r.ck, 16) {
            remove_from(p, ctx, &f)?;
        }
    }
    Ok(())
}

/// An erased user's own feed and recent-items list go; their items are gone from followers'
/// feeds already (the edges were removed first).
pub(crate) fn erase_author(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    user: &Uuid,
) -> Result<(), StoreError> {
    ctx.batch
        .lane_delete_range(tables::FEED, user.as_bytes(), &CkRange::all());
    let s = p.feeds.state(ctx, user, p.config.feed_cap)?;
    s.len = 0;
    s.unknown = true;
    let items = ctx.store.scan(
        tables::AUTHOR_ITEMS,
        user.as_bytes(),
        &CkRange::all(),
        Order::Asc,
        usize::MAX,
    )?;
    for r in items {
        if let Some(id) = keys::undesc(&r.ck)
            && let Some(mut doc) = ctx.item(&id)?
        {
            doc.state = super::docs::ItemState::Deleted;
            ctx.put_item(&doc);
        }
    }
    ctx.batch
        .delete_range(tables::AUTHOR_ITEMS, keys::id(user), CkRange::all());
    let n = ctx.counter(tables::USER_STATS, user, AUTHOR_ITEMS_STAT)?;
    ctx.add(tables::USER_STATS, user, AUTHOR_ITEMS_STAT, -n)?;
    Ok(())
}
