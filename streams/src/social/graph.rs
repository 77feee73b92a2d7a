//! The follower graph: follows, unfollows, blocks, and what they do to feeds.

use bytes::Bytes;
use uuid::Uuid;

use super::{Ctx, Res, SocialProcessor, fail, feed, keys, reason, tables};
use crate::job::Outcome;
use crate::store::{CkRange, Order, StoreError};

pub(crate) const FOLLOWERS_STAT: &str = "followers";
pub(crate) const FOLLOWING_STAT: &str = "following";
/// Set (to 1) once an author is pulled at read time instead of pushed.
pub(crate) const PULLED_STAT: &str = "pulled";

/// Whether `follower` follows `followee`; the follow's id if so.
pub(crate) fn edge(
    ctx: &Ctx<'_>,
    follower: &Uuid,
    followee: &Uuid,
) -> Result<Option<Uuid>, StoreError> {
    Ok(ctx
        .store
        .get(
            tables::FOLLOW_EDGES,
            follower.as_bytes(),
            followee.as_bytes(),
        )?
        .and_then(|v| keys::uuid_at(&v, 0)))
}

/// Whether `author`'s items are pulled at read time.
pub(crate) fn is_pulled(ctx: &mut Ctx<'_>, author: &Uuid) -> Result<bool, StoreError> {
    Ok(ctx.counter(tables::USER_STATS, author, PULLED_STAT)? != 0)
}

pub(crate) fn follow(p: &mut SocialProcessor, ctx: &mut Ctx<'_>, followee: &Uuid) -> Res {
    let follower = ctx.actor();
    if follower == *followee {
        return fail(reason::SELF_REFERENCE);
    }
    match p.user_state(ctx, followee)? {
        None => return fail(reason::UNKNOWN_USER),
        Some(true) => return fail(reason::ACCOUNT_ERASED),
        Some(false) => {}
    }
    if ctx.blocked_either(&follower, followee)? {
        return fail(reason::BLOCKED);
    }
    if edge(ctx, &follower, followee)?.is_some() {
        return Ok(Outcome::Applied); // already following: nothing changes
    }
    let fid = ctx.env.id;
    ctx.batch.put(
        tables::FOLLOW_EDGES,
        keys::id(&follower),
        keys::id(followee),
        keys::id(&fid),
    );
    ctx.batch.put(
        tables::FOLLOWING,
        keys::id(&follower),
        keys::desc_then(&fid, followee),
        Bytes::new(),
    );
    p.follower_lists.invalidate(followee);
    ctx.batch.put(
        tables::FOLLOWERS,
        keys::id(followee),
        keys::desc_then(&fid, &follower),
        Bytes::new(),
    );
    ctx.add(tables::USER_STATS, &follower, FOLLOWING_STAT, 1)?;
    let followers = ctx.add(tables::USER_STATS, followee, FOLLOWERS_STAT, 1)?;

    if is_pulled(ctx, followee)? {
        ctx.batch.put(
            tables::PULLED,
            keys::id(&follower),
            keys::id(followee),
            Bytes::new(),
        );
    } else if followers >= p.config.pull_threshold {
        promote_to_pull(ctx, followee)?;
    } else {
        feed::backfill(p, ctx, &follower, followee)?;
    }
    if super::notify::subscribes(p, ctx, &follower)? {
        ctx.batch.put(
            tables::SUBSCRIBERS,
            keys::id(followee),
            keys::id(&follower),
            Bytes::new(),
        );
    }
    let note = super::notify::Note::new("new_follower", None, None);
    super::notify::notify(p, ctx, followee, note)?;
    Ok(Outcome::Applied)
}

/// Switches `author` to read-time pull: every current follower pulls their items from now on.
/// Happens once per author (pull is never undone; reading a pulled author costs one scan).
fn promote_to_pull(ctx: &mut Ctx<'_>, author: &Uuid) -> Result<(), StoreError> {
    ctx.add(tables::USER_STATS, author, PULLED_STAT, 1)?;
    let store = ctx.store;
    super::for_each_row(store, tables::FOLLOWERS, author.as_bytes(), |r| {
        if let Some(f) = keys::uuid_at(&r.ck, 16) {
            ctx.batch
                .put(tables::PULLED, keys::id(&f), keys::id(author), Bytes::new());
        }
        Ok(())
    })?;
    // The follow being applied is in the batch, not yet in the store.
    ctx.batch.put(
        tables::PULLED,
        keys::id(&ctx.actor()),
        keys::id(author),
        Bytes::new(),
    );
    Ok(())
}

/// Removes the edge `follower → followee` and the followee's items from the follower's feed.
/// Returns whether there was an edge.
fn remove_edge(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    follower: &Uuid,
    followee: &Uuid,
) -> Result<bool, StoreError> {
    let Some(fid) = edge(ctx, follower, followee)? else {
        return Ok(false);
    };
    ctx.batch
        .delete(tables::FOLLOW_EDGES, keys::id(follower), keys::id(followee));
    ctx.batch.delete(
        tables::FOLLOWING,
        keys::id(follower),
        keys::desc_then(&fid, followee),
    );
    p.follower_lists.invalidate(followee);
    ctx.batch.delete(
        tables::FOLLOWERS,
        keys::id(followee),
        keys::desc_then(&fid, follower),
    );
    ctx.batch
        .delete(tables::PULLED, keys::id(follower), keys::id(followee));
    ctx.batch
        .delete(tables::SUBSCRIBERS, keys::id(followee), keys::id(follower));
    ctx.add(tables::USER_STATS, follower, FOLLOWING_STAT, -1)?;
    ctx.add(tables::USER_STATS, followee, FOLLOWERS_STAT, -1)?;
    feed::remove_author(p, ctx, follower, followee)?;
    Ok(true)
}

pub(crate) fn unfollow(p: &mut SocialProcessor, ctx: &mut Ctx<'_>, followee: &Uuid) -> Res {
    let follower = ctx.actor();
    if remove_edge(p, ctx, &follower, followee)? {
        Ok(Outcome::Applied)
    } else {
        fail(reason::NOT_FOLLOWING)
    }
}

/// A block removes the follow edges both ways (and so each other's items from the feeds); while
/// it stands, neither can follow the other and the blocked user's actions do not notify.
pub(crate) fn block(p: &mut SocialProcessor, ctx: &mut Ctx<'_>, blocked: &Uuid) -> Res {
    let blocker = ctx.actor();
    if blocker == *blocked {
        return fail(reason::SELF_REFERENCE);
    }
    if p.user_state(ctx, blocked)?.is_none() {
        return fail(reason::UNKNOWN_USER);
    }
    if ctx.blocks(&blocker, blocked)? {
        return Ok(Outcome::Applied);
    }
    ctx.batch.put(
        tables::BLOCKS,
        keys::id(&blocker),
        keys::id(blocked),
        keys::id(&ctx.env.id),
    );
    remove_edge(p, ctx, &blocker, blocked)?;
    remove_edge(p, ctx, blocked, &blocker)?;
    Ok(Outcome::Applied)
}

pub(crate) fn unblock(ctx: &mut Ctx<'_>, blocked: &Uuid) -> Res {
    let blocker = ctx.actor();
    if !ctx.blocks(&blocker, blocked)? {
        return fail(reason::NOT_BLOCKED);
    }
    ctx.batch
        .delete(tables::BLOCKS, keys::id(&blocker), keys::id(blocked));
    Ok(Outcome::Applied)
}

/// `account.erased`: the user leaves the graph and every feed; their profile is reduced to a
/// tombstone so their later actions fail and replays skip them.
pub(crate) fn erase(p: &mut SocialProcessor, ctx: &mut Ctx<'_>) -> Res {
    let user = ctx.actor();
    // Both directions, paged: an erasure is rare and may be large.
    for (table, outgoing) in [(tables::FOLLOWING, true), (tables::FOLLOWERS, false)] {
        let rows = ctx.store.scan(
            table,
            user.as_bytes(),
            &CkRange::all(),
            Order::Asc,
            usize::MAX,
        )?;
        for r in rows {
            if let Some(other) = keys::uuid_at(&r.ck, 16) {
                if outgoing {
                    remove_edge(p, ctx, &user, &other)?;
                } else {
                    remove_edge(p, ctx, &other, &user)?;
                }
            }
        }
    }
    let mut doc = ctx.user(&user)?.unwrap_or_default();
    ctx.batch.delete(
        tables::USERNAMES,
        Bytes::from(doc.username.to_lowercase()),
        Bytes::new(),
    );
    doc = super::docs::UserDoc {
        erased: true,
        registered_at: doc.registered_at,
        ..Default::default()
    };
    ctx.put_user(&user, &doc);
    p.set_user_state(&user, true);
    feed::erase_author(p, ctx, &user)?;
    // Their notifications, groups, read marker and preferences go too.
    for table in [
        tables::NOTIFICATIONS,
        tables::NOTIF_GROUPS,
        tables::NOTIF_STATE,
        tables::OFFER_BOXES,
        tables::PULLED,
    ] {
        ctx.batch
            .delete_range(table, keys::id(&user), CkRange::all());
    }
    Ok(Outcome::Applied)
}
