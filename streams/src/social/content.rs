//! Content views: users, posts, approaches, comments, reactions, donations, campaigns, events,
//! RSVPs and job offers.

use bytes::Bytes;
use philo_events::action::{
    ApproachCreated, CampaignClosed, CampaignCreated, CommentCreated, CommentDeleted, DonationMade,
    EventCancelled, EventRsvp, ImagePurpose, ImageUploaded, JobOfferAnswered, JobOfferCreated,
    JobOfferWithdrawn, OfferAnswer, ProfileUpdated, ReactionKind, ResumeUpdated, UserRegistered,
};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::docs::{ItemDoc, ItemKind, ItemState, UserDoc};
use super::notify::{self, Note};
use super::{Ctx, Res, SocialProcessor, fail, feed, keys, reason, tables};
use crate::job::Outcome;

pub(crate) const APPROACHES_STAT: &str = "approaches";
pub(crate) const COMMENTS_STAT: &str = "comments";
pub(crate) const REACTIONS_STAT: &str = "reactions";
pub(crate) const DONATIONS_STAT: &str = "donations";

/// The action's payload fields, without `type`.
fn payload(ctx: &Ctx<'_>) -> Map<String, Value> {
    match serde_json::to_value(&ctx.env.action) {
        Ok(Value::Object(mut m)) => {
            m.remove("type");
            m
        }
        _ => Map::new(),
    }
}

fn new_item(ctx: &Ctx<'_>, kind: ItemKind, parent: Option<Uuid>) -> ItemDoc {
    ItemDoc {
        id: ctx.env.id,
        kind,
        author: ctx.actor(),
        created_at: ctx.env.received_at,
        edited_at: None,
        state: ItemState::Open,
        parent,
        data: payload(ctx),
        pushed: true,
    }
}

/// Looks up a live item of one of `kinds`; the failure reason otherwise.
fn live_item(
    ctx: &Ctx<'_>,
    id: &Uuid,
    kinds: &[ItemKind],
) -> Result<Result<ItemDoc, &'static str>, crate::store::StoreError> {
    Ok(match ctx.item(id)? {
        None => Err(reason::TARGET_NOT_FOUND),
        Some(d) if d.state == ItemState::Deleted => Err(reason::TARGET_DELETED),
        Some(d) if !kinds.contains(&d.kind) => Err(reason::WRONG_TARGET_KIND),
        Some(d) => Ok(d),
    })
}

macro_rules! live {
    ($ctx:expr, $id:expr, $kinds:expr) => {
        match live_item($ctx, $id, $kinds)? {
            Ok(d) => d,
            Err(r) => return fail(r),
        }
    };
}

pub(crate) fn user_registered(ctx: &mut Ctx<'_>, a: &UserRegistered) -> Res {
    let user = ctx.actor();
    let lower = a.username.to_lowercase();
    if let Some(owner) = ctx.store.get(tables::USERNAMES, lower.as_bytes(), b"")?
        && owner.as_ref() != user.as_bytes()
    {
        return fail(reason::USERNAME_TAKEN);
    }
    let mut doc = ctx.user(&user)?.unwrap_or_default();
    doc.username = a.username.clone();
    doc.registered_at.get_or_insert(ctx.env.received_at);
    ctx.put_user(&user, &doc);
    ctx.batch.put(
        tables::USERNAMES,
        Bytes::from(lower),
        Bytes::new(),
        keys::id(&user),
    );
    Ok(Outcome::Applied)
}

fn known_user(ctx: &Ctx<'_>) -> Result<Option<UserDoc>, crate::store::StoreError> {
    ctx.user(&ctx.actor())
}

pub(crate) fn profile_updated(ctx: &mut Ctx<'_>, a: &ProfileUpdated) -> Res {
    let Some(mut doc) = known_user(ctx)? else {
        return fail(reason::UNKNOWN_USER);
    };
    if let Some(n) = &a.display_name {
        doc.display_name = Some(n.clone());
    }
    if let Some(d) = &a.description {
        doc.description = Some(d.clone());
    }
    ctx.put_user(&ctx.actor(), &doc);
    Ok(Outcome::Applied)
}

pub(crate) fn resume_updated(ctx: &mut Ctx<'_>, a: &ResumeUpdated) -> Res {
    let Some(mut doc) = known_user(ctx)? else {
        return fail(reason::UNKNOWN_USER);
    };
    doc.skills = a.skills.clone();
    ctx.put_user(&ctx.actor(), &doc);
    Ok(Outcome::Applied)
}

pub(crate) fn image_uploaded(ctx: &mut Ctx<'_>, a: &ImageUploaded) -> Res {
    let Some(mut doc) = known_user(ctx)? else {
        return fail(reason::UNKNOWN_USER);
    };
    if a.purpose == ImagePurpose::Avatar {
        doc.avatar_image_id = Some(a.image_id);
    }
    if !doc.image_ids.contains(&a.image_id) {
        doc.image_ids.push(a.image_id);
        // Bounded: the newest 100 images.
        if doc.image_ids.len() > 100 {
            doc.image_ids.remove(0);
        }
    }
    ctx.put_user(&ctx.actor(), &doc);
    Ok(Outcome::Applied)
}

pub(crate) fn post_created(p: &mut SocialProcessor, ctx: &mut Ctx<'_>) -> Res {
    let mut doc = new_item(ctx, ItemKind::Post, None);
    feed::publish(p, ctx, &mut doc)?;
    notify::mention(p, ctx, &doc, &[])?;
    notify::post_to_subscribers(p, ctx, &doc.id)?;
    Ok(Outcome::Applied)
}

pub(crate) fn event_created(p: &mut SocialProcessor, ctx: &mut Ctx<'_>) -> Res {
    let mut doc = new_item(ctx, ItemKind::Event, None);
    feed::publish(p, ctx, &mut doc)?;
    notify::mention(p, ctx, &doc, &[])?;
    Ok(Outcome::Applied)
}

pub(crate) fn approach_created(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    a: &ApproachCreated,
) -> Res {
    let post_author = match &a.post_id {
        Some(post) => Some(live!(ctx, post, &[ItemKind::Post]).author),
        None => None,
    };
    let mut doc = new_item(ctx, ItemKind::Approach, a.post_id);
    if let Some(post) = &a.post_id {
        ctx.batch.put(
            tables::CHILDREN,
            keys::id(post),
            child_ck(ItemKind::Approach, &doc.id),
            Bytes::new(),
        );
        ctx.fact(tables::ITEM_STATS, post, APPROACHES_STAT, 1);
        ctx.engagement(post, APPROACHES_STAT);
    }
    feed::publish(p, ctx, &mut doc)?;
    let mut told = Vec::new();
    if let Some(author) = post_author {
        let note = Note::new("approach_on_post", a.post_id, Some(doc.id));
        if notify::notify(p, ctx, &author, note)? {
            told.push(author);
        }
    }
    notify::mention(p, ctx, &doc, &told)?;
    Ok(Outcome::Applied)
}

pub(crate) fn child_ck(kind: ItemKind, id: &Uuid) -> Bytes {
    let mut k = Vec::with_capacity(17);
    k.push(kind.byte());
    k.extend_from_slice(id.as_bytes());
    Bytes::from(k)
}

/// Fields an edit may not change (ids that say what is edited).
const ID_FIELDS: &[&str] = &["post_id", "approach_id", "event_id"];

pub(crate) fn edit(ctx: &mut Ctx<'_>, id: &Uuid, kind: ItemKind) -> Res {
    let mut doc = live!(ctx, id, &[kind]);
    if doc.author != ctx.actor() {
        return fail(reason::NOT_AUTHOR);
    }
    if kind == ItemKind::Event && doc.state == ItemState::Cancelled {
        return fail(reason::EVENT_CANCELLED);
    }
    for (k, v) in payload(ctx) {
        if !v.is_null() && !ID_FIELDS.contains(&k.as_str()) {
            doc.data.insert(k, v);
        }
    }
    doc.edited_at = Some(ctx.env.received_at);
    ctx.put_item(&doc);
    Ok(Outcome::Applied)
}

pub(crate) fn delete(p: &mut SocialProcessor, ctx: &mut Ctx<'_>, id: &Uuid, kind: ItemKind) -> Res {
    let mut doc = live!(ctx, id, &[kind]);
    if doc.author != ctx.actor() {
        return fail(reason::NOT_AUTHOR);
    }
    doc.state = ItemState::Deleted;
    doc.edited_at = Some(ctx.env.received_at);
    ctx.put_item(&doc);
    if let (ItemKind::Approach, Some(post)) = (kind, doc.parent) {
        ctx.batch.delete(
            tables::CHILDREN,
            keys::id(&post),
            child_ck(ItemKind::Approach, id),
        );
        ctx.fact(tables::ITEM_STATS, &post, APPROACHES_STAT, -1);
    }
    feed::remove_item(p, ctx, &doc)?;
    Ok(Outcome::Applied)
}

pub(crate) fn comment_created(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    a: &CommentCreated,
) -> Res {
    let target = live!(
        ctx,
        &a.target_id,
        &[ItemKind::Post, ItemKind::Approach, ItemKind::Event]
    );
    let mut parent_author = None;
    if let Some(parent) = &a.parent_id {
        let parent = live!(ctx, parent, &[ItemKind::Comment]);
        if parent.parent != Some(a.target_id) {
            return fail(reason::PARENT_MISMATCH);
        }
        parent_author = Some(parent.author);
    }
    let doc = new_item(ctx, ItemKind::Comment, Some(a.target_id));
    ctx.put_item(&doc);
    ctx.batch.put(
        tables::CHILDREN,
        keys::id(&a.target_id),
        child_ck(ItemKind::Comment, &doc.id),
        Bytes::new(),
    );
    ctx.fact(tables::ITEM_STATS, &a.target_id, COMMENTS_STAT, 1);
    ctx.engagement(&a.target_id, COMMENTS_STAT);
    let kind = match target.kind {
        ItemKind::Post => "comment_on_post",
        ItemKind::Approach => "comment_on_approach",
        _ => "comment_on_event",
    };
    let mut told = Vec::new();
    if notify::notify(
        p,
        ctx,
        &target.author,
        Note::new(kind, Some(target.id), Some(doc.id)),
    )? {
        told.push(target.author);
    }
    if let Some(parent_author) = parent_author
        && parent_author != target.author
        && notify::notify(
            p,
            ctx,
            &parent_author,
            Note::new("reply", a.parent_id, Some(doc.id)),
        )?
    {
        told.push(parent_author);
    }
    notify::mention(p, ctx, &doc, &told)?;
    Ok(Outcome::Applied)
}

/// A comment may be deleted by its author or by the author of what it comments on.
pub(crate) fn comment_deleted(ctx: &mut Ctx<'_>, a: &CommentDeleted) -> Res {
    let mut doc = live!(ctx, &a.comment_id, &[ItemKind::Comment]);
    let target = doc.parent.unwrap_or_default();
    let target_author = ctx.item(&target)?.map(|t| t.author);
    if doc.author != ctx.actor() && target_author != Some(ctx.actor()) {
        return fail(reason::NOT_AUTHOR);
    }
    doc.state = ItemState::Deleted;
    doc.edited_at = Some(ctx.env.received_at);
    ctx.put_item(&doc);
    ctx.batch.delete(
        tables::CHILDREN,
        keys::id(&target),
        child_ck(ItemKind::Comment, &a.comment_id),
    );
    ctx.fact(tables::ITEM_STATS, &target, COMMENTS_STAT, -1);
    Ok(Outcome::Applied)
}

fn reaction_ck(actor: &Uuid, kind: ReactionKind) -> Bytes {
    let mut k = Vec::with_capacity(32);
    k.extend_from_slice(actor.as_bytes());
    let name = serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    k.extend_from_slice(name.as_bytes());
    Bytes::from(k)
}

/// One reaction of one kind per user and target: adding twice or removing a missing one is a
/// valid no-op.
pub(crate) fn reaction(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    target: &Uuid,
    kind: ReactionKind,
    add: bool,
) -> Res {
    let doc = live!(
        ctx,
        target,
        &[
            ItemKind::Post,
            ItemKind::Approach,
            ItemKind::Comment,
            ItemKind::Event,
            ItemKind::Campaign,
            ItemKind::JobOffer
        ]
    );
    let ck = reaction_ck(&ctx.actor(), kind);
    let exists = ctx
        .store
        .get(tables::REACTIONS, target.as_bytes(), &ck)?
        .is_some();
    match (add, exists) {
        (true, false) => {
            ctx.batch
                .put(tables::REACTIONS, keys::id(target), ck, Bytes::new());
            ctx.fact(tables::ITEM_STATS, target, REACTIONS_STAT, 1);
            ctx.engagement(target, REACTIONS_STAT);
            let mut group = b"reaction:".to_vec();
            group.extend_from_slice(target.as_bytes());
            let mut note = Note::new("reaction", Some(*target), None);
            note.group = Some(&group);
            notify::notify(p, ctx, &doc.author, note)?;
        }
        (false, true) => {
            ctx.batch.delete(tables::REACTIONS, keys::id(target), ck);
            ctx.fact(tables::ITEM_STATS, target, REACTIONS_STAT, -1);
        }
        _ => {}
    }
    Ok(Outcome::Applied)
}

fn total_add(
    ctx: &mut Ctx<'_>,
    target: &Uuid,
    currency: &str,
    amount: i64,
) -> Result<Option<i64>, crate::store::StoreError> {
    let cur = ctx
        .store
        .get(
            tables::DONATION_TOTALS,
            target.as_bytes(),
            currency.as_bytes(),
        )?
        .map_or(0, |b| keys::decode_i64(&b));
    Ok(cur.checked_add(amount))
}

/// Donations go to an approach or to an open campaign (before its end). Totals are exact
/// integer sums per currency.
pub(crate) fn donation(p: &mut SocialProcessor, ctx: &mut Ctx<'_>, a: &DonationMade) -> Res {
    let target = live!(ctx, &a.target_id, &[ItemKind::Approach, ItemKind::Campaign]);
    let currency = a.currency.as_str();
    if target.kind == ItemKind::Campaign {
        let ends_at = target
            .data
            .get("ends_at")
            .and_then(|v| serde_json::from_value::<chrono::DateTime<chrono::Utc>>(v.clone()).ok());
        if target.state != ItemState::Open || ends_at.is_some_and(|e| ctx.env.received_at >= e) {
            return fail(reason::CAMPAIGN_CLOSED);
        }
        if target.data.get("currency").and_then(Value::as_str) != Some(currency) {
            return fail(reason::CURRENCY_MISMATCH);
        }
    }
    let Some(total) = total_add(ctx, &a.target_id, currency, a.amount_minor)? else {
        return fail(reason::AMOUNT_OVERFLOW);
    };
    ctx.batch.put(
        tables::DONATION_TOTALS,
        keys::id(&a.target_id),
        Bytes::copy_from_slice(currency.as_bytes()),
        keys::i64_value(total),
    );
    ctx.fact(tables::ITEM_STATS, &a.target_id, DONATIONS_STAT, 1);
    ctx.engagement(&a.target_id, DONATIONS_STAT);
    let mut note = Note::new("donation", Some(a.target_id), Some(ctx.env.id));
    note.data
        .insert("amount_minor".into(), Value::from(a.amount_minor));
    note.data.insert("currency".into(), Value::from(currency));
    notify::notify(p, ctx, &target.author, note)?;
    if target.kind == ItemKind::Campaign {
        let goal = target
            .data
            .get("goal_minor")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MAX);
        if total >= goal && total - a.amount_minor < goal {
            let mut note = Note::new("campaign_goal_reached", Some(a.target_id), None);
            note.data.insert("raised_minor".into(), Value::from(total));
            note.data.insert("currency".into(), Value::from(currency));
            notify::notify(p, ctx, &target.author, note)?;
        }
    }
    Ok(Outcome::Applied)
}

/// A campaign raises money for an approach, a post or an event.
pub(crate) fn campaign_created(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    a: &CampaignCreated,
) -> Res {
    live!(
        ctx,
        &a.target_id,
        &[ItemKind::Approach, ItemKind::Post, ItemKind::Event]
    );
    let mut doc = new_item(ctx, ItemKind::Campaign, Some(a.target_id));
    feed::publish(p, ctx, &mut doc)?;
    Ok(Outcome::Applied)
}

pub(crate) fn campaign_closed(ctx: &mut Ctx<'_>, a: &CampaignClosed) -> Res {
    let mut doc = live!(ctx, &a.campaign_id, &[ItemKind::Campaign]);
    if doc.author != ctx.actor() {
        return fail(reason::NOT_AUTHOR);
    }
    if doc.state != ItemState::Open {
        return fail(reason::ALREADY_CLOSED);
    }
    doc.state = ItemState::Closed;
    doc.edited_at = Some(ctx.env.received_at);
    ctx.put_item(&doc);
    Ok(Outcome::Applied)
}

/// An event edit; everyone who RSVP'd going or interested hears of it.
pub(crate) fn event_updated(p: &mut SocialProcessor, ctx: &mut Ctx<'_>, id: &Uuid) -> Res {
    if let Outcome::Failed(r) = edit(ctx, id, ItemKind::Event)? {
        return fail(r);
    }
    for user in notify::attendees(ctx, id)? {
        notify::notify(p, ctx, &user, Note::new("event_updated", Some(*id), None))?;
    }
    Ok(Outcome::Applied)
}

pub(crate) fn event_cancelled(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    a: &EventCancelled,
) -> Res {
    let mut doc = live!(ctx, &a.event_id, &[ItemKind::Event]);
    if doc.author != ctx.actor() {
        return fail(reason::NOT_AUTHOR);
    }
    if doc.state == ItemState::Cancelled {
        return fail(reason::EVENT_CANCELLED);
    }
    doc.state = ItemState::Cancelled;
    doc.edited_at = Some(ctx.env.received_at);
    if let Some(r) = &a.reason {
        doc.data
            .insert("cancel_reason".into(), Value::String(r.clone()));
    }
    ctx.put_item(&doc);
    for user in notify::attendees(ctx, &a.event_id)? {
        let note = Note::new("event_cancelled", Some(a.event_id), None);
        notify::notify(p, ctx, &user, note)?;
    }
    Ok(Outcome::Applied)
}

fn status_name<T: serde::Serialize>(s: &T) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One RSVP per user and event; counts per status.
pub(crate) fn rsvp(ctx: &mut Ctx<'_>, a: &EventRsvp) -> Res {
    let doc = live!(ctx, &a.event_id, &[ItemKind::Event]);
    if doc.state == ItemState::Cancelled {
        return fail(reason::EVENT_CANCELLED);
    }
    let user = ctx.actor();
    let status = status_name(&a.status);
    let previous = ctx
        .store
        .get(tables::RSVPS, a.event_id.as_bytes(), user.as_bytes())?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    if previous.as_deref() == Some(status.as_str()) {
        return Ok(Outcome::Applied);
    }
    if let Some(prev) = previous {
        ctx.fact(tables::ITEM_STATS, &a.event_id, rsvp_stat(&prev), -1);
    }
    ctx.fact(tables::ITEM_STATS, &a.event_id, rsvp_stat(&status), 1);
    ctx.batch.put(
        tables::RSVPS,
        keys::id(&a.event_id),
        keys::id(&user),
        Bytes::from(status),
    );
    Ok(Outcome::Applied)
}

fn rsvp_stat(status: &str) -> &'static str {
    match status {
        "going" => "rsvp_going",
        "interested" => "rsvp_interested",
        _ => "rsvp_not_going",
    }
}

pub(crate) const RECEIVED_BOX: u8 = b'r';
pub(crate) const SENT_BOX: u8 = b's';

pub(crate) fn box_ck(which: u8, offer: &Uuid) -> Bytes {
    let mut k = Vec::with_capacity(17);
    k.push(which);
    k.extend_from_slice(&keys::desc(offer));
    Bytes::from(k)
}

/// An offer to a user lands in their received box; a public one (no recipient) is a feed item.
pub(crate) fn offer_created(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    a: &JobOfferCreated,
) -> Res {
    let sender = ctx.actor();
    if let Some(to) = &a.to_user_id {
        if *to == sender {
            return fail(reason::SELF_REFERENCE);
        }
        match p.user_state(ctx, to)? {
            None => return fail(reason::UNKNOWN_USER),
            Some(true) => return fail(reason::ACCOUNT_ERASED),
            Some(false) => {}
        }
        if ctx.blocked_either(&sender, to)? {
            return fail(reason::BLOCKED);
        }
    }
    let mut doc = new_item(ctx, ItemKind::JobOffer, None);
    ctx.batch.put(
        tables::OFFER_BOXES,
        keys::id(&sender),
        box_ck(SENT_BOX, &doc.id),
        Bytes::new(),
    );
    match &a.to_user_id {
        Some(to) => {
            ctx.put_item(&doc);
            ctx.batch.put(
                tables::OFFER_BOXES,
                keys::id(to),
                box_ck(RECEIVED_BOX, &doc.id),
                Bytes::new(),
            );
            let note = Note::new("job_offer_received", Some(doc.id), Some(doc.id));
            notify::notify(p, ctx, to, note)?;
        }
        None => feed::publish(p, ctx, &mut doc)?,
    }
    Ok(Outcome::Applied)
}

pub(crate) fn offer_answered(
    p: &mut SocialProcessor,
    ctx: &mut Ctx<'_>,
    a: &JobOfferAnswered,
) -> Res {
    let mut doc = live!(ctx, &a.offer_id, &[ItemKind::JobOffer]);
    let to = doc
        .data
        .get("to_user_id")
        .and_then(|v| serde_json::from_value::<Uuid>(v.clone()).ok());
    if to != Some(ctx.actor()) {
        return fail(reason::NOT_RECIPIENT);
    }
    if doc.state != ItemState::Open {
        return fail(reason::ALREADY_CLOSED);
    }
    let kind = match a.answer {
        OfferAnswer::Accepted => "job_offer_accepted",
        OfferAnswer::Declined => "job_offer_declined",
    };
    doc.state = match a.answer {
        OfferAnswer::Accepted => ItemState::Accepted,
        OfferAnswer::Declined => ItemState::Declined,
    };
    doc.edited_at = Some(ctx.env.received_at);
    ctx.put_item(&doc);
    let note = Note::new(kind, Some(a.offer_id), None);
    notify::notify(p, ctx, &doc.author, note)?;
    Ok(Outcome::Applied)
}

pub(crate) fn offer_withdrawn(ctx: &mut Ctx<'_>, a: &JobOfferWithdrawn) -> Res {
    let mut doc = live!(ctx, &a.offer_id, &[ItemKind::JobOffer]);
    if doc.author != ctx.actor() {
        return fail(reason::NOT_AUTHOR);
    }
    if doc.state != ItemState::Open {
        return fail(reason::ALREADY_CLOSED);
    }
    doc.state = ItemState::Withdrawn;
    doc.edited_at = Some(ctx.env.received_at);
    ctx.put_item(&doc);
    Ok(Outcome::Applied)
}
