//! Turns actions into the rows of the lake's fact tables, anonymized: identifiers become keyed
//! pseudonyms, free text is scrubbed, times are truncated to the hour, and what a procurer
//! must never see (payment references, image ids, event locations, raw ids, usernames) is not
//! carried at all. The tables and their columns are listed in [`TABLES`] and `docs/lake.md`.
//!
//! The [`Anonymizer`] keeps the little state the mapping needs: usernames (to turn `@mentions`
//! into pseudonyms), who opted out of data sale (their later actions produce no fact rows, only
//! the `opt_outs` row that the query API anti-joins on), and who was erased (nothing of theirs
//! is written again). Writing the rows as Delta tables is the next layer.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};
use philo_events::{Action, Envelope};
use serde::Serialize;
use uuid::Uuid;

use crate::kanon::{Dimension, UserFacts, generalise};
use crate::pseudonym::{Domain, Pseudonymizer};
use crate::scrub::Scrubber;

/// The anonymization policy rows are written under (recorded in every row and commit). Bump it
/// whenever what reaches the lake changes.
pub const POLICY_VERSION: i64 = 1;

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Str,
    I64,
    Bool,
    /// A list of strings.
    Strs,
    /// A UTC timestamp truncated to the hour.
    Hour,
    Day,
}

/// A cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Str(String),
    I64(i64),
    Bool(bool),
    Strs(Vec<String>),
    Hour(DateTime<Utc>),
    Day(NaiveDate),
}

impl Value {
    /// Whether the value fits a column of `ty` (null only where `nullable`).
    pub fn fits(&self, ty: ColType, nullable: bool) -> bool {
        matches!(
            (self, ty),
            (Value::Str(_), ColType::Str)
                | (Value::I64(_), ColType::I64)
                | (Value::Bool(_), ColType::Bool)
                | (Value::Strs(_), ColType::Strs)
                | (Value::Hour(_), ColType::Hour)
                | (Value::Day(_), ColType::Day)
        ) || (nullable && *self == Value::Null)
    }
}

/// A table: its name and columns `(name, type, nullable)`, the common ones first.
#[derive(Debug)]
pub struct TableSchema {
    pub name: &'static str,
    pub columns: &'static [(&'static str, ColType, bool)],
    /// Columns holding user pseudonyms: what erasure deletes by and opt-outs filter on.
    pub user_columns: &'static [&'static str],
}

macro_rules! table {
    ($name:literal, users: [$($u:literal),*], $($col:literal: $ty:ident $null:tt),* $(,)?) => {
        TableSchema {
            name: $name,
            columns: &[
                ("day", ColType::Day, false),
                ("hour", ColType::Hour, false),
                ("key_id", ColType::Str, false),
                ("policy_version", ColType::I64, false),
                $(($col, ColType::$ty, table!(@null $null))),*
            ],
            user_columns: &[$($u),*],
        }
    };
    (@null !) => { false };
    (@null ?) => { true };
}

/// Every fact table the anonymizer writes. `?` marks a nullable column, `!` a required one.
/// A column added after a table exists must be nullable: tables in the field gain it (see
/// `LakeTable::open`) with older rows null.
pub const TABLES: &[TableSchema] = &[
    table!("posts", users: ["author"], "post": Str !, "author": Str !, "event": Str !, "title": Str ?, "body": Str ?, "tags": Strs ?),
    table!("approaches", users: ["author"], "approach": Str !, "post": Str ?, "author": Str !, "event": Str !, "title": Str ?, "body": Str ?),
    table!("comments", users: ["author"], "comment": Str !, "target": Str ?, "parent": Str ?, "author": Str !, "event": Str !, "body": Str ?),
    table!("reactions", users: ["user"], "target": Str !, "user": Str !, "kind": Str !, "removed": Bool !),
    table!("donations", users: ["donor"], "donation": Str !, "target": Str !, "donor": Str !, "amount_minor": I64 !, "currency": Str !),
    table!("campaigns", users: ["owner"], "campaign": Str !, "target": Str ?, "owner": Str !, "event": Str !, "goal_minor": I64 ?, "currency": Str ?, "ends_day": Day ?),
    table!("events", users: ["organizer"], "event_id": Str !, "organizer": Str !, "event": Str !, "title": Str ?, "description": Str ?, "starts_hour": Hour ?, "ends_hour": Hour ?, "online": Bool ?, "capacity": I64 ?),
    table!("event_rsvps", users: ["user"], "event_id": Str !, "user": Str !, "status": Str !),
    table!("job_offers", users: ["sender", "recipient"], "offer": Str !, "sender": Str !, "recipient": Str ?, "event": Str !, "title": Str ?, "description": Str ?, "skills": Strs ?, "salary_band": Str ?),
    table!("follows", users: ["follower", "followee"], "follower": Str !, "followee": Str !, "kind": Str !),
    table!("explore_interactions", users: ["user"], "user": Str !, "item": Str !, "kind": Str !, "rank": I64 ?),
    table!("resumes", users: ["user"], "user": Str !, "text": Str !, "skills": Strs !),
    table!("opt_outs", users: ["user"], "user": Str !, "opted_out": Bool !),
];

/// The `users` dimension: one row per user who may be sold, generalised to k-anonymity and
/// rewritten as a whole (so it has no `day`/`hour` and is not partitioned).
pub static USERS: TableSchema = TableSchema {
    name: "users",
    columns: &[
        ("key_id", ColType::Str, false),
        ("policy_version", ColType::I64, false),
        ("user", ColType::Str, false),
        ("signup_period", ColType::Str, false),
        ("role", ColType::Str, false),
        ("has_display_name", ColType::Bool, false),
        ("description", ColType::Str, true),
        ("skills", ColType::Strs, false),
    ],
    user_columns: &["user"],
};

/// Actions the stream jobs could not apply (from the `actions.failed` topic): what failed and
/// why, never the action's content.
pub static FAILED_ACTIONS: TableSchema = table!(
    "failed_actions", users: ["actor"],
    "action": Str !, "actor": Str !, "kind": Str !, "reason": Str !, "job": Str ?
);

/// Daily counts per table and kind of action, recomputed for the days that changed.
pub static DAILY_ACTIVITY: TableSchema = TableSchema {
    name: "daily_activity",
    columns: &[
        ("day", ColType::Day, false),
        ("source", ColType::Str, true),
        ("kind", ColType::Str, true),
        ("actions", ColType::I64, true),
        ("users", ColType::I64, true),
    ],
    user_columns: &[],
};

/// Daily donations per currency, recomputed for the days that changed.
pub static DAILY_DONATIONS: TableSchema = TableSchema {
    name: "daily_donations",
    columns: &[
        ("day", ColType::Day, false),
        ("currency", ColType::Str, true),
        ("donations", ColType::I64, true),
        ("amount_minor", ColType::I64, true),
        ("donors", ColType::I64, true),
    ],
    user_columns: &[],
};

/// The schema of `table` (a fact table, `failed_actions`, `users` or a daily aggregate).
pub fn schema(table: &str) -> Option<&'static TableSchema> {
    [&USERS, &FAILED_ACTIONS, &DAILY_ACTIVITY, &DAILY_DONATIONS]
        .into_iter()
        .find(|t| t.name == table)
        .or_else(|| TABLES.iter().find(|t| t.name == table))
}

/// The index of fact table `table` in [`TABLES`].
pub fn table_index(table: &str) -> Option<usize> {
    TABLES.iter().position(|t| t.name == table)
}

/// One row of one table, its values in the schema's column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub table: &'static str,
    pub values: Vec<Value>,
}

impl Row {
    /// The value of `column`.
    pub fn get(&self, column: &str) -> Option<&Value> {
        let schema = schema(self.table)?;
        let i = schema.columns.iter().position(|(c, _, _)| *c == column)?;
        self.values.get(i)
    }
}

/// Actions in, anonymized rows out. See the module docs.
#[derive(Debug)]
pub struct Anonymizer {
    pseudo: Pseudonymizer,
    scrub: Scrubber,
    /// Lower-cased username → user id, for mentions.
    usernames: HashMap<String, Uuid>,
    opted_out: HashSet<Uuid>,
    erased: HashSet<Uuid>,
    /// Pseudonyms of the erased users, to drop rows that name them in any user column.
    erased_pseudonyms: HashSet<String>,
    /// What the `users` dimension is built from.
    facts: HashMap<Uuid, UserFacts>,
    /// Pseudonyms of users and referenced items computed lately: the same users act again
    /// and again, and a lookup costs a fraction of an HMAC. Emptied when full.
    /// (A mutex, uncontended, as the job is shared across await points.)
    recent: Mutex<HashMap<(Domain, Uuid), String>>,
}

/// Most pseudonyms [`Anonymizer`] keeps at hand (about 100 bytes each).
const RECENT_PSEUDONYMS: usize = 1 << 18;

/// Builds one row: the common columns, then the table's own in order.
struct RowBuilder {
    table: &'static TableSchema,
    values: Vec<Value>,
}

impl RowBuilder {
    fn set(mut self, column: &str, value: Value) -> Self {
        let i = self
            .table
            .columns
            .iter()
            .position(|(c, _, _)| *c == column)
            .unwrap_or_else(|| panic!("{} has no column {column}", self.table.name));
        self.values[i] = value;
        self
    }

    fn done(self) -> Row {
        Row {
            table: self.table.name,
            values: self.values,
        }
    }
}

/// The wire name of a vocabulary enum (`"insightful"`, `"EUR"`, …).
fn wire<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn hour(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

impl Anonymizer {
    pub fn new(pseudo: Pseudonymizer) -> Self {
        Self {
            pseudo,
            scrub: Scrubber::new(),
            usernames: HashMap::new(),
            opted_out: HashSet::new(),
            erased: HashSet::new(),
            erased_pseudonyms: HashSet::new(),
            facts: HashMap::new(),
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// The pseudonym of `id`, from the recent ones when it is there.
    fn recent(&self, domain: Domain, id: Uuid) -> String {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = recent.get(&(domain, id)) {
            return p.clone();
        }
        let p = self.pseudo.pseudonym(domain, id);
        if recent.len() >= RECENT_PSEUDONYMS {
            recent.clear();
        }
        recent.insert((domain, id), p.clone());
        p
    }

    fn user(&self, id: Uuid) -> Value {
        Value::Str(self.recent(Domain::User, id))
    }

    /// A referenced item (a post reacted to, say): items are referenced again and again.
    fn item(&self, id: Uuid) -> Value {
        Value::Str(self.recent(Domain::Item, id))
    }

    /// The item an action creates: named once, not worth keeping.
    fn new_item(&self, id: Uuid) -> Value {
        Value::Str(self.pseudo.pseudonym(Domain::Item, id))
    }

    fn opt_item(&self, id: Option<Uuid>) -> Value {
        id.map_or(Value::Null, |id| self.item(id))
    }

    fn text(&self, text: &str) -> Value {
        let mention = |name: &str| {
            self.usernames
                .get(&name.to_lowercase())
                .map(|id| self.recent(Domain::User, *id))
        };
        Value::Str(self.scrub.scrub(text, &mention).text)
    }

    fn opt_text(&self, text: Option<&str>) -> Value {
        text.map_or(Value::Null, |t| self.text(t))
    }

    fn row(&self, table: &'static str, env: &Envelope) -> RowBuilder {
        let table = schema(table).expect("a known table");
        let mut values = vec![Value::Null; table.columns.len()];
        values[0] = Value::Day(env.received_at.date_naive());
        values[1] = Value::Hour(hour(env.received_at));
        values[2] = Value::Str(self.pseudo.key_id().to_owned());
        values[3] = Value::I64(POLICY_VERSION);
        RowBuilder { table, values }
    }

    /// A new anonymizer under the same key, knowing nothing yet.
    pub fn fresh(&self) -> Self {
        Self::new(self.pseudo.clone())
    }

    /// Updates what the anonymizer knows (usernames, opt-outs, erasures, the `users` facts)
    /// from `env` without producing rows: how a restarted job catches up on the log before the
    /// point it resumes writing from.
    pub fn observe(&mut self, env: &Envelope) {
        let _ = self.bookkeep(env);
    }

    /// Records that `user` is erased before their `account.erased` is reached (a replay knows
    /// every erasure in the log up front, so nothing of theirs is written even once).
    pub fn mark_erased(&mut self, user: Uuid) {
        self.erased.insert(user);
        self.erased_pseudonyms
            .insert(self.pseudo.pseudonym(Domain::User, user));
        self.opted_out.remove(&user);
        self.facts.remove(&user);
    }

    /// Whether `user` is erased.
    pub fn is_erased(&self, user: &Uuid) -> bool {
        self.erased.contains(user)
    }

    /// Whether `user` has opted out of data sale.
    pub fn is_opted_out(&self, user: &Uuid) -> bool {
        self.opted_out.contains(user)
    }

    /// The `failed_actions` row of a failure the stream jobs reported, or `None` when the
    /// actor is erased or opted out.
    pub fn failed_row(
        &self,
        action: Uuid,
        actor: Uuid,
        kind: &str,
        reason: &str,
        job: Option<&str>,
        received: DateTime<Utc>,
    ) -> Option<Row> {
        if self.erased.contains(&actor) || self.opted_out.contains(&actor) {
            return None;
        }
        let table = &FAILED_ACTIONS;
        let mut values = vec![Value::Null; table.columns.len()];
        values[0] = Value::Day(received.date_naive());
        values[1] = Value::Hour(hour(received));
        values[2] = Value::Str(self.pseudo.key_id().to_owned());
        values[3] = Value::I64(POLICY_VERSION);
        values[4] = Value::Str(self.pseudo.pseudonym(Domain::Item, action));
        values[5] = Value::Str(self.pseudo.pseudonym(Domain::User, actor));
        values[6] = Value::Str(kind.to_owned());
        values[7] = Value::Str(reason.to_owned());
        values[8] = job.map_or(Value::Null, |j| Value::Str(j.to_owned()));
        Some(Row {
            table: table.name,
            values,
        })
    }

    /// The pseudonym of `user` (what erasure deletes by).
    pub fn user_pseudonym(&self, user: Uuid) -> String {
        self.pseudo.pseudonym(Domain::User, user)
    }

    /// The pseudonym key's id.
    pub fn key_id(&self) -> &str {
        self.pseudo.key_id()
    }

    /// Whether `row` names an erased user in any of its user columns (a follow of an erased
    /// user from another partition, say): such rows are never written.
    pub fn names_erased(&self, row: &Row) -> bool {
        if self.erased_pseudonyms.is_empty() {
            return false;
        }
        let Some(schema) = schema(row.table) else {
            return false;
        };
        schema.user_columns.iter().any(
            |c| matches!(row.get(c), Some(Value::Str(p)) if self.erased_pseudonyms.contains(p)),
        )
    }

    /// The facts of every user who may appear in the `users` dimension: registered, not
    /// erased, not opted out of data sale.
    pub fn user_facts(&self) -> Vec<UserFacts> {
        let mut facts: Vec<UserFacts> = self
            .facts
            .values()
            .filter(|f| !self.opted_out.contains(&f.user))
            .cloned()
            .collect();
        facts.sort_by_key(|f| f.user);
        facts
    }

    /// The `users` dimension, generalised to `k`-anonymity (see [`crate::kanon`]).
    pub fn users_dimension(&self, k: usize) -> (Vec<Row>, Dimension) {
        let dimension = generalise(&self.user_facts(), k);
        let table = &USERS;
        let rows = dimension
            .rows
            .iter()
            .map(|r| {
                let mut values = vec![Value::Null; table.columns.len()];
                values[0] = Value::Str(self.pseudo.key_id().to_owned());
                values[1] = Value::I64(POLICY_VERSION);
                values[2] = Value::Str(self.pseudo.pseudonym(Domain::User, r.user));
                values[3] = Value::Str(r.signup_period.clone());
                values[4] = Value::Str(r.role.clone());
                values[5] = Value::Bool(r.has_display_name);
                values[6] = r.description.clone().map_or(Value::Null, Value::Str);
                values[7] = Value::Strs(r.skills.clone());
                Row {
                    table: table.name,
                    values,
                }
            })
            .collect();
        (rows, dimension)
    }

    /// Bookkeeping: what every action teaches the anonymizer, rows or not. `Some(rows)` when
    /// the action is fully handled here.
    fn bookkeep(&mut self, env: &Envelope) -> Option<Vec<Row>> {
        let actor = env.actor_id;
        if self.erased.contains(&actor) {
            return Some(Vec::new());
        }
        match &env.action {
            Action::UserRegistered(a) => {
                self.usernames.insert(a.username.to_lowercase(), actor);
                self.facts.insert(
                    actor,
                    UserFacts {
                        user: actor,
                        signed_up: env.received_at,
                        role: wire(&a.role),
                        has_display_name: false,
                        description_chars: 0,
                        skills: Vec::new(),
                    },
                );
                Some(Vec::new())
            }
            Action::AccountErased(_) => {
                self.mark_erased(actor);
                self.usernames.retain(|_, id| *id != actor);
                Some(Vec::new())
            }
            Action::ProfileUpdated(a) => {
                if let Some(f) = self.facts.get_mut(&actor) {
                    if a.display_name.is_some() {
                        f.has_display_name = true;
                    }
                    if let Some(d) = &a.description {
                        f.description_chars = d.chars().count();
                    }
                }
                let out = a.sale_opt_out?;
                if out {
                    self.opted_out.insert(actor);
                } else {
                    self.opted_out.remove(&actor);
                }
                Some(vec![
                    self.row("opt_outs", env)
                        .set("user", self.user(actor))
                        .set("opted_out", Value::Bool(out))
                        .done(),
                ])
            }
            Action::ResumeUpdated(a) => {
                if let Some(f) = self.facts.get_mut(&actor) {
                    f.skills = a.skills.clone();
                }
                None
            }
            _ => None,
        }
    }

    /// The rows `env` adds to the lake (often one, none for actions the lake does not keep).
    pub fn anonymize(&mut self, env: &Envelope) -> Vec<Row> {
        if let Some(rows) = self.bookkeep(env) {
            return rows;
        }
        let actor = env.actor_id;
        if self.opted_out.contains(&actor) {
            return Vec::new();
        }
        let me = self.user(actor);
        let id = self.new_item(env.id);
        let row = match &env.action {
            Action::PostCreated(a) => self
                .row("posts", env)
                .set("post", id)
                .set("author", me)
                .set("event", Value::Str("created".into()))
                .set("title", self.text(&a.title))
                .set("body", self.text(&a.body))
                .set("tags", Value::Strs(a.tags.clone())),
            Action::PostEdited(a) => self
                .row("posts", env)
                .set("post", self.item(a.post_id))
                .set("author", me)
                .set("event", Value::Str("edited".into()))
                .set("title", self.opt_text(a.title.as_deref()))
                .set("body", self.opt_text(a.body.as_deref()))
                .set("tags", a.tags.clone().map_or(Value::Null, Value::Strs)),
            Action::PostDeleted(a) => self
                .row("posts", env)
                .set("post", self.item(a.post_id))
                .set("author", me)
                .set("event", Value::Str("deleted".into())),
            Action::ApproachCreated(a) => self
                .row("approaches", env)
                .set("approach", id)
                .set("post", self.opt_item(a.post_id))
                .set("author", me)
                .set("event", Value::Str("created".into()))
                .set("title", self.text(&a.title))
                .set("body", self.text(&a.body)),
            Action::ApproachEdited(a) => self
                .row("approaches", env)
                .set("approach", self.item(a.approach_id))
                .set("author", me)
                .set("event", Value::Str("edited".into()))
                .set("title", self.opt_text(a.title.as_deref()))
                .set("body", self.opt_text(a.body.as_deref())),
            Action::ApproachDeleted(a) => self
                .row("approaches", env)
                .set("approach", self.item(a.approach_id))
                .set("author", me)
                .set("event", Value::Str("deleted".into())),
            Action::CommentCreated(a) => self
                .row("comments", env)
                .set("comment", id)
                .set("target", self.item(a.target_id))
                .set("parent", self.opt_item(a.parent_id))
                .set("author", me)
                .set("event", Value::Str("created".into()))
                .set("body", self.text(&a.body)),
            Action::CommentDeleted(a) => self
                .row("comments", env)
                .set("comment", self.item(a.comment_id))
                .set("author", me)
                .set("event", Value::Str("deleted".into())),
            Action::ReactionAdded(a) => self
                .row("reactions", env)
                .set("target", self.item(a.target_id))
                .set("user", me)
                .set("kind", Value::Str(wire(&a.kind)))
                .set("removed", Value::Bool(false)),
            Action::ReactionRemoved(a) => self
                .row("reactions", env)
                .set("target", self.item(a.target_id))
                .set("user", me)
                .set("kind", Value::Str(wire(&a.kind)))
                .set("removed", Value::Bool(true)),
            Action::DonationMade(a) => self
                .row("donations", env)
                .set("donation", id)
                .set("target", self.item(a.target_id))
                .set("donor", me)
                .set("amount_minor", Value::I64(a.amount_minor))
                .set("currency", Value::Str(wire(&a.currency))),
            Action::CampaignCreated(a) => self
                .row("campaigns", env)
                .set("campaign", id)
                .set("target", self.item(a.target_id))
                .set("owner", me)
                .set("event", Value::Str("created".into()))
                .set("goal_minor", Value::I64(a.goal_minor))
                .set("currency", Value::Str(wire(&a.currency)))
                .set("ends_day", Value::Day(a.ends_at.date_naive())),
            Action::CampaignClosed(a) => self
                .row("campaigns", env)
                .set("campaign", self.item(a.campaign_id))
                .set("owner", me)
                .set("event", Value::Str("closed".into())),
            Action::EventCreated(a) => self
                .row("events", env)
                .set("event_id", id)
                .set("organizer", me)
                .set("event", Value::Str("created".into()))
                .set("title", self.text(&a.title))
                .set("description", self.text(&a.description))
                .set("starts_hour", Value::Hour(hour(a.starts_at)))
                .set("ends_hour", Value::Hour(hour(a.ends_at)))
                .set("online", Value::Bool(a.online_url.is_some()))
                .set(
                    "capacity",
                    a.capacity.map_or(Value::Null, |c| Value::I64(c.into())),
                ),
            Action::EventUpdated(a) => self
                .row("events", env)
                .set("event_id", self.item(a.event_id))
                .set("organizer", me)
                .set("event", Value::Str("updated".into()))
                .set("title", self.opt_text(a.title.as_deref()))
                .set("description", self.opt_text(a.description.as_deref()))
                .set(
                    "starts_hour",
                    a.starts_at.map_or(Value::Null, |t| Value::Hour(hour(t))),
                )
                .set(
                    "ends_hour",
                    a.ends_at.map_or(Value::Null, |t| Value::Hour(hour(t))),
                )
                .set(
                    "online",
                    match (&a.online_url, &a.location) {
                        (Some(_), _) => Value::Bool(true),
                        (None, Some(_)) => Value::Bool(false),
                        (None, None) => Value::Null,
                    },
                )
                .set(
                    "capacity",
                    a.capacity.map_or(Value::Null, |c| Value::I64(c.into())),
                ),
            Action::EventCancelled(a) => self
                .row("events", env)
                .set("event_id", self.item(a.event_id))
                .set("organizer", me)
                .set("event", Value::Str("cancelled".into())),
            Action::EventRsvp(a) => self
                .row("event_rsvps", env)
                .set("event_id", self.item(a.event_id))
                .set("user", me)
                .set("status", Value::Str(wire(&a.status))),
            Action::JobOfferCreated(a) => self
                .row("job_offers", env)
                .set("offer", id)
                .set("sender", me)
                .set(
                    "recipient",
                    a.to_user_id.map_or(Value::Null, |u| self.user(u)),
                )
                .set("event", Value::Str("created".into()))
                .set("title", self.text(&a.title))
                .set("description", self.text(&a.description))
                .set("skills", Value::Strs(a.skills.clone()))
                .set(
                    "salary_band",
                    a.salary_band
                        .as_ref()
                        .map_or(Value::Null, |b| Value::Str(wire(b))),
                ),
            Action::JobOfferAnswered(a) => self
                .row("job_offers", env)
                .set("offer", self.item(a.offer_id))
                .set("sender", me)
                .set("event", Value::Str(format!("answered:{}", wire(&a.answer)))),
            Action::JobOfferWithdrawn(a) => self
                .row("job_offers", env)
                .set("offer", self.item(a.offer_id))
                .set("sender", me)
                .set("event", Value::Str("withdrawn".into())),
            Action::FollowCreated(a) => self.edge(env, me, a.user_id, "follow"),
            Action::FollowRemoved(a) => self.edge(env, me, a.user_id, "unfollow"),
            Action::BlockCreated(a) => self.edge(env, me, a.user_id, "block"),
            Action::BlockRemoved(a) => self.edge(env, me, a.user_id, "unblock"),
            Action::ResumeUpdated(a) => self
                .row("resumes", env)
                .set("user", me)
                .set("text", self.text(&a.text))
                .set("skills", Value::Strs(a.skills.clone())),
            Action::ExploreViewed(a) => {
                return a
                    .item_ids
                    .iter()
                    .enumerate()
                    .map(|(rank, item)| {
                        self.row("explore_interactions", env)
                            .set("user", me.clone())
                            .set("item", self.item(*item))
                            .set("kind", Value::Str("viewed".into()))
                            .set("rank", Value::I64(rank as i64))
                            .done()
                    })
                    .collect();
            }
            Action::ExploreClicked(a) => self.interaction(env, me, a.item_id, "clicked"),
            Action::ExploreDismissed(a) => self.interaction(env, me, a.item_id, "dismissed"),
            // Sessions, notification settings and image storage say nothing a procurer buys;
            // registrations and profiles feed the `users` dimension, built separately.
            Action::UserRegistered(_)
            | Action::UserLoggedIn(_)
            | Action::UserLoggedOut(_)
            | Action::AccountErased(_)
            | Action::ProfileUpdated(_)
            | Action::ImageUploaded(_)
            | Action::NotificationsRead(_)
            | Action::NotificationPreferencesUpdated(_) => return Vec::new(),
        };
        vec![row.done()]
    }

    fn edge(&self, env: &Envelope, me: Value, other: Uuid, kind: &str) -> RowBuilder {
        self.row("follows", env)
            .set("follower", me)
            .set("followee", self.user(other))
            .set("kind", Value::Str(kind.into()))
    }

    fn interaction(&self, env: &Envelope, me: Value, item: Uuid, kind: &str) -> RowBuilder {
        self.row("explore_interactions", env)
            .set("user", me)
            .set("item", self.item(item))
            .set("kind", Value::Str(kind.into()))
    }
}
