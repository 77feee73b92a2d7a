//! Notifications: who hears about what, grouping, preferences and read markers.
//!
//! Rules every notification follows: nobody is notified about their own action, nor about an
//! action by a user they blocked, nor of a type they turned off (see
//! [`NotificationPreferencesUpdated`]). Reactions to one target are grouped into one
//! notification ("A and 4 others reacted") while that notification is unread and less than
//! [`GROUP_WINDOW_HOURS`] old (event time, so replays group the same way); an update moves the
//! notification to the top with the id of the latest action.

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use philo_events::action::NotificationPreferencesUpdated;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::docs::{ItemDoc, ItemKind};
use super::{Ctx, Res, SocialProcessor, keys, tables};
use crate::job::Outcome;
use crate::store::{CkRange, Order, StoreError};

/// How long a reaction group stays open.
pub const GROUP_WINDOW_HOURS: i64 = 24;
/// Notifications kept per user (the oldest beyond this are deleted).
pub const KEEP_PER_USER: usize = 500;
/// Actors remembered per grouped notification (the count keeps counting beyond).
const ACTORS_KEPT: usize = 50;
/// Actors shown per notification.
pub const ACTORS_SHOWN: usize = 3;

/// One notification as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Id of the latest action that made or updated it; time-ordered.
    pub id: Uuid,
    /// What happened: `new_follower`, `approach_on_post`, `comment_on_post`,
    /// `comment_on_approach`, `comment_on_event`, `reply`, `reaction`, `donation`,
    /// `campaign_goal_reached`, `job_offer_received`, `job_offer_accepted`,
    /// `job_offer_declined`, `event_updated`, `event_cancelled`, `mention`, `post_by_followed`.
    pub kind: String,
    /// Who did it, most recent first.
    pub actors: Vec<Uuid>,
    /// How many distinct actors (grouped notifications).
    pub actor_count: u32,
    /// Your thing that was acted on (post, approach, event, offer, campaign, comment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<Uuid>,
    /// The new thing (the comment, the approach, the donation …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<Uuid>,
    /// Extra facts (amount and currency of a donation …).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub data: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Every notification kind, in the order two notes of one action are listed (later = newer).
pub const KINDS: &[&str] = &[
    "new_follower",
    "approach_on_post",
    "comment_on_post",
    "comment_on_approach",
    "comment_on_event",
    "reply",
    "reaction",
    "donation",
    "campaign_goal_reached",
    "job_offer_received",
    "job_offer_accepted",
    "job_offer_declined",
    "event_updated",
    "event_cancelled",
    "mention",
    "post_by_followed",
];

/// The preference that governs a notification kind.
pub fn preference_of(kind: &str) -> &'static str {
    match kind {
        "new_follower" => "new_follower",
        "approach_on_post" => "approach_on_post",
        "comment_on_post" | "comment_on_approach" | "comment_on_event" | "reply" => "comment",
        "reaction" => "reaction",
        "donation" => "donation",
        "campaign_goal_reached" => "campaign_goal_reached",
        "job_offer_received" | "job_offer_accepted" | "job_offer_declined" => "job_offer",
        "event_updated" | "event_cancelled" => "event_change",
        "mention" => "mention",
        _ => "post_by_followed",
    }
}

/// Preference names, in bit order.
const PREFERENCES: [&str; 10] = [
    "new_follower",
    "approach_on_post",
    "comment",
    "reaction",
    "donation",
    "campaign_goal_reached",
    "job_offer",
    "event_change",
    "mention",
    "post_by_followed",
];

fn bit(pref: &str) -> u16 {
    PREFERENCES
        .iter()
        .position(|p| *p == pref)
        .map_or(0, |i| 1 << i)
}

/// Everything on except `post_by_followed`.
pub fn default_preferences() -> u16 {
    ((1u16 << PREFERENCES.len()) - 1) & !bit("post_by_followed")
}

/// A preference mask as `{name: bool}`.
pub fn preferences_map(mask: u16) -> Map<String, Value> {
    PREFERENCES
        .iter()
        .map(|p| (p.to_string(), Value::Bool(mask & bit(p) != 0)))
        .collect()
}

/// The stored preference mask of `user`.
pub fn read_preferences(
    store: &dyn crate::store::StateStore,
    user: &Uuid,
) -> Result<u16, StoreError> {
    Ok(store
        .get(tables::NOTIF_STATE, user.as_bytes(), PREFS_CK)?
        .and_then(|v| v.as_ref().try_into().ok().map(u16::from_be_bytes))
        .unwrap_or_else(default_preferences))
}

/// The id up to which `user` has read, if any.
pub fn read_marker(
    store: &dyn crate::store::StateStore,
    user: &Uuid,
) -> Result<Option<Uuid>, StoreError> {
    Ok(store
        .get(tables::NOTIF_STATE, user.as_bytes(), READ_CK)?
        .and_then(|v| keys::uuid_at(&v, 0)))
}

pub(crate) const PREFS_CK: &[u8] = b"prefs";
pub(crate) const READ_CK: &[u8] = b"read_upto";

/// Exact caches of preference masks (a function of the store; refilled on a miss).
#[derive(Default)]
pub(crate) struct NotifyCache {
    prefs: HashMap<Uuid, u16>,
}

fn prefs(p: &mut SocialProcessor, ctx: &Ctx<'_>, user: &Uuid) -> Result<u16, StoreError> {
    if let Some(m) = p.notify.prefs.get(user) {
        return Ok(*m);
    }
    let m = read_preferences(ctx.store, user)?;
    if p.notify.prefs.len() >= 1_000_000 {
        p.notify.prefs.clear();
    }
    p.notify.prefs.insert(*user, m);
    Ok(m)
}

/// What a new notification says.
pub(crate) struct Note<'a> {
    pub kind: &'static str,
    pub target: Option<Uuid>,
    pub subject: Option<Uuid>,
    pub data: Map<String, Value>,
    pub group: Option<&'a [u8]>,
}

impl Note<'_> {
    pub fn new(kind: &'static str, target: Option<Uuid>, subject: Option<Uuid>) -> Self {
        Self {
            kind,
            target,
            subject,
            data: Map::new(),
            group: None,
        }
    }
}

/// Notifies `recipient` of the current action, unless a rule says no. Returns whether it did.
pub(crate) fn notify(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    recipient: &Uuid,
    note: Note<'_>,
) -> Result<bool, StoreError> {
    let actor = ctx.actor();
    if *recipient == actor
        || prefs(p, ctx, recipient)? & bit(preference_of(note.kind)) == 0
        || ctx.blocks(recipient, &actor)?
        || p.user_state(ctx, recipient)? != Some(false)
    {
        return Ok(false);
    }
    let now = ctx.env.received_at;
    let id = note_id(&ctx.env.id, note.kind);
    let pk = keys::id(recipient);
    if let Some(group) = note.group
        && let Some(old_id) = ctx
            .store
            .get(tables::NOTIF_GROUPS, recipient.as_bytes(), group)?
            .and_then(|v| keys::uuid_at(&v, 0))
        && let Some(mut old) = ctx
            .store
            .get(
                tables::NOTIFICATIONS,
                recipient.as_bytes(),
                &keys::desc(&old_id),
            )?
            .and_then(|v| serde_json::from_slice::<Notification>(&v).ok())
    {
        let unread = read_marker(ctx.store, recipient)?.is_none_or(|m| old_id > m);
        if unread && now - old.created_at < Duration::hours(GROUP_WINDOW_HOURS) {
            ctx.batch.delete(
                tables::NOTIFICATIONS,
                pk.clone(),
                Bytes::copy_from_slice(&keys::desc(&old_id)),
            );
            let seen = old.actors.contains(&actor);
            old.actors.retain(|a| *a != actor);
            old.actors.insert(0, actor);
            old.actors.truncate(ACTORS_KEPT);
            if !seen {
                old.actor_count += 1;
            }
            old.id = id;
            old.updated_at = now;
            old.subject_id = note.subject.or(old.subject_id);
            put(ctx, recipient, &old, Some(group));
            return Ok(true);
        }
    }
    let n = Notification {
        id,
        kind: note.kind.to_owned(),
        actors: vec![actor],
        actor_count: 1,
        target_id: note.target,
        subject_id: note.subject,
        data: note.data,
        created_at: now,
        updated_at: now,
    };
    put(ctx, recipient, &n, note.group);
    trim(p, ctx, recipient)?;
    Ok(true)
}

/// A notification's id: the action id's first 12 bytes (its time and, within one millisecond,
/// its counter: the order actions were made in), then the kind's rank and a hash of the action
/// id and the kind. So one action can notify one user of two things (a donation that also
/// reaches the goal), two notes of one action sort by kind, and replays give the same ids.
pub fn note_id(action: &Uuid, kind: &str) -> Uuid {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(action.as_bytes());
    h.update(kind.as_bytes());
    let tail = h.finalize();
    let mut b = *action.as_bytes();
    let rank = KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len()) as u8;
    b[12] = rank;
    b[13..].copy_from_slice(&tail[..3]);
    Uuid::from_bytes(b)
}

fn put(ctx: &mut Ctx<'_>, recipient: &Uuid, n: &Notification, group: Option<&[u8]>) {
    let pk = keys::id(recipient);
    ctx.batch.put(
        tables::NOTIFICATIONS,
        pk.clone(),
        Bytes::copy_from_slice(&keys::desc(&n.id)),
        serde_json::to_vec(n).expect("plain struct serialises"),
    );
    if let Some(g) = group {
        ctx.batch.put(
            tables::NOTIF_GROUPS,
            pk,
            Bytes::copy_from_slice(g),
            keys::id(&n.id),
        );
    }
}

/// Keeps the newest [`KEEP_PER_USER`] notifications (checked every 64 new ones).
fn trim(p: &mut SocialProcessor, ctx: &mut Ctx<'_>, user: &Uuid) -> Result<(), StoreError> {
    let n = ctx.add(tables::USER_STATS, user, NOTIFICATIONS_STAT, 1)?;
    if n < (KEEP_PER_USER + 64) as i64 {
        return Ok(());
    }
    let _ = p;
    let rows = ctx.store.scan(
        tables::NOTIFICATIONS,
        user.as_bytes(),
        &CkRange::all(),
        Order::Asc,
        usize::MAX,
    )?;
    // The row just written is in the batch, not in `rows`: keep KEEP_PER_USER - 1 of these.
    let keep = KEEP_PER_USER - 1;
    let mut removed = 0;
    for r in rows.iter().skip(keep) {
        ctx.batch
            .delete(tables::NOTIFICATIONS, keys::id(user), r.ck.clone());
        removed += 1;
    }
    ctx.add(tables::USER_STATS, user, NOTIFICATIONS_STAT, -removed)?;
    Ok(())
}

pub(crate) const NOTIFICATIONS_STAT: &str = "notifications";

/// `notifications.read`: the marker only moves forward.
pub(crate) fn mark_read(ctx: &mut Ctx<'_>, up_to: &Uuid) -> Res {
    let user = ctx.actor();
    if read_marker(ctx.store, &user)?.is_some_and(|m| m >= *up_to) {
        return Ok(Outcome::Applied);
    }
    ctx.batch.put(
        tables::NOTIF_STATE,
        keys::id(&user),
        Bytes::from_static(READ_CK),
        keys::id(up_to),
    );
    Ok(Outcome::Applied)
}

/// `notifications.preferences_updated`: set types change, the others keep their setting.
pub(crate) fn set_preferences(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    a: &NotificationPreferencesUpdated,
) -> Res {
    let user = ctx.actor();
    let old = prefs(p, ctx, &user)?;
    let mut mask = old;
    for (name, value) in a.fields() {
        match value {
            Some(true) => mask |= bit(name),
            Some(false) => mask &= !bit(name),
            None => {}
        }
    }
    // Opting in to posts by followed authors subscribes to each of them (and out, unsubscribes),
    // so a post costs one scan of its author's subscribers, not of all their followers.
    let on = bit("post_by_followed");
    if (old ^ mask) & on != 0 {
        let followees = ctx.store.scan(
            tables::FOLLOWING,
            user.as_bytes(),
            &CkRange::all(),
            Order::Asc,
            usize::MAX,
        )?;
        for r in followees {
            if let Some(author) = keys::uuid_at(&r.ck, 16) {
                if mask & on != 0 {
                    ctx.batch.put(
                        tables::SUBSCRIBERS,
                        keys::id(&author),
                        keys::id(&user),
                        Bytes::new(),
                    );
                } else {
                    ctx.batch
                        .delete(tables::SUBSCRIBERS, keys::id(&author), keys::id(&user));
                }
            }
        }
    }
    ctx.batch.put(
        tables::NOTIF_STATE,
        keys::id(&user),
        Bytes::from_static(PREFS_CK),
        Bytes::copy_from_slice(&mask.to_be_bytes()),
    );
    p.notify.prefs.insert(user, mask);
    Ok(Outcome::Applied)
}

/// `@username` mentions in `text`: names of 3–32 letters, digits or `_`, after a non-word
/// character or at the start. Hand-written: a regex crate for one token rule is not worth it.
pub fn mentions(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'@' && (i == 0 || !word(b[i - 1])) {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && word(b[end]) {
                end += 1;
            }
            let name = &text[start..end];
            if (3..=32).contains(&name.len()) && !out.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                out.push(name.to_owned());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Notifies users mentioned in the new item's text fields, except those in `skip` (already
/// notified about this action otherwise). At most 20 mentions per action.
pub(crate) fn mention(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    doc: &ItemDoc,
    skip: &[Uuid],
) -> Result<(), StoreError> {
    let mut names = Vec::new();
    for field in ["title", "body", "description"] {
        if let Some(t) = doc.data.get(field).and_then(Value::as_str) {
            for n in mentions(t) {
                if !names.iter().any(|x: &String| x.eq_ignore_ascii_case(&n)) {
                    names.push(n);
                }
            }
        }
    }
    for name in names.into_iter().take(20) {
        let Some(user) = ctx
            .store
            .get(tables::USERNAMES, name.to_lowercase().as_bytes(), b"")?
            .and_then(|v| keys::uuid_at(&v, 0))
        else {
            continue;
        };
        if skip.contains(&user) {
            continue;
        }
        let target = match doc.kind {
            ItemKind::Comment => doc.parent,
            _ => Some(doc.id),
        };
        notify(p, ctx, &user, Note::new("mention", target, Some(doc.id)))?;
    }
    Ok(())
}

/// Whether `user` opted in to posts by the authors they follow.
pub(crate) fn subscribes(
    p: &mut SocialProcessor,
    ctx: &Ctx<'_>,
    user: &Uuid,
) -> Result<bool, StoreError> {
    Ok(prefs(p, ctx, user)? & bit("post_by_followed") != 0)
}

/// Opt-in notifications of a new post to the author's subscribers (followers who opted in).
pub(crate) fn post_to_subscribers(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    post: &Uuid,
) -> Result<(), StoreError> {
    let author = ctx.actor();
    let store = ctx.store;
    super::for_each_row(store, tables::SUBSCRIBERS, author.as_bytes(), |r| {
        if let Some(f) = keys::uuid_at(&r.ck, 0) {
            notify(p, ctx, &f, Note::new("post_by_followed", None, Some(*post)))?;
        }
        Ok(())
    })
}

/// Users who RSVP'd `going` or `interested` to `event`.
pub(crate) fn attendees(ctx: &Ctx<'_>, event: &Uuid) -> Result<Vec<Uuid>, StoreError> {
    Ok(ctx
        .store
        .scan(
            tables::RSVPS,
            event.as_bytes(),
            &CkRange::all(),
            Order::Asc,
            usize::MAX,
        )?
        .into_iter()
        .filter(|r| r.value.as_ref() != b"not_going")
        .filter_map(|r| keys::uuid_at(&r.ck, 0))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_found_once_at_word_starts() {
        assert_eq!(
            mentions("hi @ann and @Bob_2, not mail@ann.com, @ann again, @ab too short"),
            vec!["ann".to_string(), "Bob_2".to_string()]
        );
        assert!(mentions("@").is_empty());
        assert_eq!(mentions("@été @x_y_z"), vec!["x_y_z".to_string()]);
    }

    #[test]
    fn default_preferences_exclude_only_posts_by_followed() {
        let m = preferences_map(default_preferences());
        assert_eq!(m["post_by_followed"], Value::Bool(false));
        assert_eq!(m.values().filter(|v| **v == Value::Bool(true)).count(), 9);
    }
}
