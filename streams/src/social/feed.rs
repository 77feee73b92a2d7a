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

use bytes::Bytes;
use uuid::Uuid;

use super::docs::{ItemDoc, ItemKind};
use super::{Ctx, SocialProcessor, keys, tables};
use crate::store::{CkRange, Order, StoreError};

pub(crate) const AUTHOR_ITEMS_STAT: &str = "author_items";

fn slack(cap: usize) -> usize {
    (cap / 8).max(1)
}

/// The exact number of rows in `user`'s feed (before this action's batch).
fn feed_len(p: &mut SocialProcessor, ctx: &Ctx<'_>, user: &Uuid) -> Result<usize, StoreError> {
    if let Some(n) = p.feed_len.get(user) {
        return Ok(*n);
    }
    // Feeds never hold more than cap + slack rows, so a bounded scan counts them exactly.
    let bound = p.config.feed_cap + slack(p.config.feed_cap) + 1;
    let n = ctx
        .store
        .scan(
            tables::FEED,
            user.as_bytes(),
            &CkRange::all(),
            Order::Asc,
            bound,
        )?
        .len();
    if p.feed_len.len() >= 1_000_000 {
        p.feed_len.clear(); // bounded memory; counts are recomputed on demand
    }
    p.feed_len.insert(*user, n);
    Ok(n)
}

fn feed_value(author: &Uuid, kind: ItemKind) -> Bytes {
    let mut v = Vec::with_capacity(17);
    v.extend_from_slice(author.as_bytes());
    v.push(kind.byte());
    Bytes::from(v)
}

/// Writes `items` (item id, author, kind) into `user`'s feed, trimming it to the cap.
/// Items must not already be in the feed.
fn deliver(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    user: &Uuid,
    items: &[(Uuid, Uuid, ItemKind)],
) -> Result<(), StoreError> {
    if items.is_empty() {
        return Ok(());
    }
    let cap = p.config.feed_cap;
    let len = feed_len(p, ctx, user)?;
    let new_len = len + items.len();
    let mut evict: Vec<[u8; 16]> = Vec::new();
    if new_len > cap + slack(cap) {
        let excess = new_len - cap;
        // The oldest rows sort last (keys are complemented ids).
        let oldest = ctx.store.scan(
            tables::FEED,
            user.as_bytes(),
            &CkRange::all(),
            Order::Desc,
            excess,
        )?;
        let mut candidates: Vec<[u8; 16]> = oldest
            .iter()
            .filter_map(|r| r.ck.as_ref().try_into().ok())
            .chain(items.iter().map(|(id, _, _)| keys::desc(id)))
            .collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        candidates.truncate(excess);
        evict = candidates;
    }
    let pk = keys::id(user);
    for (id, author, kind) in items {
        let ck = keys::desc(id);
        if !evict.contains(&ck) {
            ctx.batch.put(
                tables::FEED,
                pk.clone(),
                Bytes::copy_from_slice(&ck),
                feed_value(author, *kind),
            );
            p.deliveries += 1;
        }
    }
    for ck in &evict {
        if !items.iter().any(|(id, _, _)| keys::desc(id) == *ck) {
            ctx.batch
                .delete(tables::FEED, pk.clone(), Bytes::copy_from_slice(ck));
        }
    }
    p.feed_len.insert(*user, new_len - evict.len());
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
    ctx.batch.put(
        tables::AUTHOR_ITEMS,
        keys::id(&author),
        Bytes::copy_from_slice(&keys::desc(&item)),
        Bytes::copy_from_slice(&[kind.byte()]),
    );
    let n = ctx.add(tables::USER_STATS, &author, AUTHOR_ITEMS_STAT, 1)?;
    let cap = p.config.author_items_cap as i64;
    if n > cap + slack(cap as usize) as i64 {
        let excess = (n - cap) as usize;
        let oldest = ctx.store.scan(
            tables::AUTHOR_ITEMS,
            author.as_bytes(),
            &CkRange::all(),
            Order::Desc,
            excess,
        )?;
        for r in &oldest {
            ctx.batch
                .delete(tables::AUTHOR_ITEMS, keys::id(&author), r.ck.clone());
        }
        ctx.add(
            tables::USER_STATS,
            &author,
            AUTHOR_ITEMS_STAT,
            -(oldest.len() as i64),
        )?;
    }
    let entry = [(item, author, kind)];
    deliver(p, ctx, &author, &entry)?;
    doc.pushed = !super::graph::is_pulled(ctx, &author)?;
    ctx.put_item(doc);
    if !doc.pushed {
        return Ok(());
    }
    let mut pushed = 0u64;
    let store = ctx.store;
    super::for_each_row(store, tables::FOLLOWERS, author.as_bytes(), |r| {
        if let Some(f) = keys::uuid_at(&r.ck, 16)
            && p.shards.owns_user(&f)
        {
            deliver(p, ctx, &f, &entry)?;
            pushed += 1;
        }
        Ok(())
    })?;
    crate::metrics::deliveries(pushed + 1);
    Ok(())
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
            items.push((id, *followee, kind));
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
        &CkRange::all(),
        Order::Asc,
        usize::MAX,
    )?;
    let mut removed = 0;
    for r in rows {
        if r.value.get(..16) == Some(author.as_bytes().as_slice()) {
            ctx.batch.delete(tables::FEED, keys::id(user), r.ck);
            removed += 1;
        }
    }
    if removed > 0 {
        let n = feed_len(p, ctx, user)?;
        p.feed_len.insert(*user, n.saturating_sub(removed));
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
            ctx.batch
                .delete(tables::FEED, keys::id(user), Bytes::copy_from_slice(&ck));
            let n = feed_len(p, ctx, user)?;
            p.feed_len.insert(*user, n.saturating_sub(1));
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
        .delete_range(tables::FEED, keys::id(user), CkRange::all());
    p.feed_len.insert(*user, 0);
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
