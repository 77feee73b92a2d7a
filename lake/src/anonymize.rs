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

use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};
use philo_events::{Action, ActionKind, Envelope};
use serde::Serialize;
use uuid::Uuid;

use crate::kanon::{Dimension, UserFacts, generalise};
use crate::pseudonym::{Domain, Pseudonym, Pseudonymizer};
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

/// Where [`Anonymizer::anonymize_into`] writes rows: a list of [`Row`]s
/// ([`Anonymizer::anonymize`], for tests and inspection) or the job's column builders
/// ([`crate::columnar::FactBatch`]). A row is [`Sink::begin`], then values of the table's own
/// columns in schema order (a column not given is null), then [`Sink::end`].
pub trait Sink {
    /// Starts a row of fact table `table` (an index into [`TABLES`]) with the common columns.
    /// `false` when rows of that table are not wanted: the anonymizer then writes nothing
    /// more of the row (not even `end`), and skips the work its values would cost.
    fn begin(&mut self, table: usize, received: DateTime<Utc>, key_id: &str) -> bool;
    fn str(&mut self, column: &'static str, value: &str);
    fn i64(&mut self, column: &'static str, value: i64);
    fn bool(&mut self, column: &'static str, value: bool);
    fn strs(&mut self, column: &'static str, value: &[String]);
    fn hour(&mut self, column: &'static str, value: DateTime<Utc>);
    fn day(&mut self, column: &'static str, value: NaiveDate);
    fn end(&mut self);
}

/// A row of `table` with the common columns (`day`, `hour`, `key_id`, `policy_version`) set
/// and the rest null.
fn common_values(table: &TableSchema, received: DateTime<Utc>, key_id: &str) -> Vec<Value> {
    let mut values = vec![Value::Null; table.columns.len()];
    values[0] = Value::Day(received.date_naive());
    values[1] = Value::Hour(hour(received));
    values[2] = Value::Str(key_id.to_owned());
    values[3] = Value::I64(POLICY_VERSION);
    values
}

/// A [`Sink`] that collects [`Row`]s.
#[derive(Debug, Default)]
pub struct RowSink {
    pub rows: Vec<Row>,
    open: Option<(&'static TableSchema, Vec<Value>)>,
}

impl RowSink {
    fn set(&mut self, column: &str, value: Value) {
        let (table, values) = self.open.as_mut().expect("a value outside a row");
        let i = table
            .columns
            .iter()
            .position(|(c, _, _)| *c == column)
            .unwrap_or_else(|| panic!("{} has no column {column}", table.name));
        values[i] = value;
    }
}

impl Sink for RowSink {
    fn begin(&mut self, table: usize, received: DateTime<Utc>, key_id: &str) -> bool {
        let table = &TABLES[table];
        self.open = Some((table, common_values(table, received, key_id)));
        true
    }

    fn str(&mut self, column: &'static str, value: &str) {
        self.set(column, Value::Str(value.to_owned()));
    }

    fn i64(&mut self, column: &'static str, value: i64) {
        self.set(column, Value::I64(value));
    }

    fn bool(&mut self, column: &'static str, value: bool) {
        self.set(column, Value::Bool(value));
    }

    fn strs(&mut self, column: &'static str, value: &[String]) {
        self.set(column, Value::Strs(value.to_vec()));
    }

    fn hour(&mut self, column: &'static str, value: DateTime<Utc>) {
        self.set(column, Value::Hour(value));
    }

    fn day(&mut self, column: &'static str, value: NaiveDate) {
        self.set(column, Value::Day(value));
    }

    fn end(&mut self) {
        let (table, values) = self.open.take().expect("end of a row not begun");
        self.rows.push(Row {
            table: table.name,
            values,
        });
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
    /// and again, and a lookup costs a fraction of an HMAC. Emptied when full. (Reached only
    /// through `&mut self`: a lock here was a third of a lookup's cost.)
    recent: HashMap<(Domain, Uuid), Pseudonym, foldhash::fast::RandomState>,
}

/// Most pseudonyms [`Anonymizer`] keeps at hand (about 64 bytes each).
const RECENT_PSEUDONYMS: usize = 1 << 18;

/// One row being written to a [`Sink`]: the setters take the anonymizer's view of a value
/// (an id to pseudonymize, text to scrub) and do nothing when the sink did not want the row.
struct RowOut<'w, 'a, S: Sink> {
    w: &'w mut Writer<'a>,
    sink: &'w mut S,
    on: bool,
}

impl<S: Sink> RowOut<'_, '_, S> {
    fn str(self, column: &'static str, value: &str) -> Self {
        if self.on {
            self.sink.str(column, value);
        }
        self
    }

    /// A user's pseudonym.
    fn user(self, column: &'static str, id: Uuid) -> Self {
        if self.on {
            self.sink
                .str(column, self.w.recent(Domain::User, id).as_str());
        }
        self
    }

    fn opt_user(self, column: &'static str, id: Option<Uuid>) -> Self {
        match id {
            Some(id) => self.user(column, id),
            None => self,
        }
    }

    /// A referenced item's pseudonym (a post reacted to, say): items are referenced again and
    /// again, so it is kept at hand.
    fn item(self, column: &'static str, id: Uuid) -> Self {
        if self.on {
            self.sink
                .str(column, self.w.recent(Domain::Item, id).as_str());
        }
        self
    }

    fn opt_item(self, column: &'static str, id: Option<Uuid>) -> Self {
        match id {
            Some(id) => self.item(column, id),
            None => self,
        }
    }

    /// The pseudonym of the item the action creates: named once, not worth keeping.
    fn new_item(self, column: &'static str, id: Uuid) -> Self {
        if self.on {
            self.sink
                .str(column, self.w.pseudo.of_uuid(Domain::Item, id).as_str());
        }
        self
    }

    /// Free text, scrubbed.
    fn text(self, column: &'static str, text: &str) -> Self {
        if self.on {
            let scrubbed = self.w.scrubbed(text);
            self.sink.str(column, &scrubbed);
        }
        self
    }

    fn opt_text(self, column: &'static str, text: Option<&str>) -> Self {
        match text {
            Some(t) => self.text(column, t),
            None => self,
        }
    }

    fn i64(self, column: &'static str, value: impl Into<i64>) -> Self {
        if self.on {
            self.sink.i64(column, value.into());
        }
        self
    }

    fn bool(self, column: &'static str, value: bool) -> Self {
        if self.on {
            self.sink.bool(column, value);
        }
        self
    }

    fn opt_bool(self, column: &'static str, value: Option<bool>) -> Self {
        match value {
            Some(v) => self.bool(column, v),
            None => self,
        }
    }

    fn strs(self, column: &'static str, value: &[String]) -> Self {
        if self.on {
            self.sink.strs(column, value);
        }
        self
    }

    /// A time, truncated to the hour.
    fn hour(self, column: &'static str, value: Option<DateTime<Utc>>) -> Self {
        match value {
            Some(t) if self.on => {
                self.sink.hour(column, hour(t));
                self
            }
            _ => self,
        }
    }

    fn day(self, column: &'static str, value: NaiveDate) -> Self {
        if self.on {
            self.sink.day(column, value);
        }
        self
    }

    fn end(self) {
        if self.on {
            self.sink.end();
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

pub(crate) fn hour(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

/// The index of fact table `name` (one of the anonymizer's own, so it exists).
fn fact(name: &str) -> usize {
    table_index(name).expect("a fact table")
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
            recent: HashMap::default(),
        }
    }

    /// What writing rows needs, borrowed apart from the bookkeeping.
    fn writer(&mut self) -> Writer<'_> {
        Writer {
            pseudo: &self.pseudo,
            scrub: &self.scrub,
            usernames: &self.usernames,
            erased: &self.erased,
            recent: &mut self.recent,
        }
    }

    /// A new anonymizer under the same key, knowing nothing yet.
    pub fn fresh(&self) -> Self {
        Self::new(self.pseudo.clone())
    }

    /// Updates what the anonymizer knows (usernames, opt-outs, erasures, the `users` facts)
    /// from `env` without producing rows: how a restarted job catches up on the log before the
    /// point it resumes writing from.
    pub fn observe(&mut self, env: &Envelope) {
        self.bookkeep(env, &mut Discard);
    }

    /// Whether [`Anonymizer::observe`] learns anything from actions of `kind`. Bookkeeping
    /// consults it first, so it is the one list of the kinds it handles: a restarted job skips
    /// decoding every other kind while it catches up (by the record's `philo-kind` header).
    pub fn learns_from(kind: ActionKind) -> bool {
        matches!(
            kind,
            ActionKind::UserRegistered
                | ActionKind::AccountErased
                | ActionKind::ProfileUpdated
                | ActionKind::ResumeUpdated
        )
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
        let mut values = common_values(table, received, self.pseudo.key_id());
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

    /// The pseudonyms of the erased users (what rows naming them are recognised by).
    pub fn erased_pseudonyms(&self) -> &HashSet<String> {
        &self.erased_pseudonyms
    }

    /// Bookkeeping: what every action teaches the anonymizer, rows or not. `true` when the
    /// action is fully handled here (its rows, if any, written to `sink`).
    fn bookkeep<S: Sink>(&mut self, env: &Envelope, sink: &mut S) -> bool {
        let actor = env.actor_id;
        if self.erased.contains(&actor) {
            return true;
        }
        if !Self::learns_from(env.action.kind()) {
            return false;
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
                true
            }
            Action::AccountErased(_) => {
                self.mark_erased(actor);
                self.usernames.retain(|_, id| *id != actor);
                true
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
                let Some(out) = a.sale_opt_out else {
                    return false;
                };
                if out {
                    self.opted_out.insert(actor);
                } else {
                    self.opted_out.remove(&actor);
                }
                self.writer()
                    .row(sink, fact("opt_outs"), env)
                    .user("user", actor)
                    .bool("opted_out", out)
                    .end();
                true
            }
            Action::ResumeUpdated(a) => {
                if let Some(f) = self.facts.get_mut(&actor) {
                    f.skills = a.skills.clone();
                }
                false
            }
            _ => false,
        }
    }

    /// The rows `env` adds to the lake (often one, none for actions the lake does not keep).
    pub fn anonymize(&mut self, env: &Envelope) -> Vec<Row> {
        let mut rows = RowSink::default();
        self.anonymize_into(env, &mut rows);
        rows.rows
    }

    /// Writes the rows `env` adds to the lake into `sink` (often one, none for actions the
    /// lake does not keep). A row that would name an erased user is not written.
    pub fn anonymize_into<S: Sink>(&mut self, env: &Envelope, sink: &mut S) {
        if self.bookkeep(env, sink) {
            return;
        }
        let actor = env.actor_id;
        if self.opted_out.contains(&actor) {
            return;
        }
        let id = env.id;
        let mut w = self.writer();
        match &env.action {
            Action::PostCreated(a) => w
                .row(sink, fact("posts"), env)
                .new_item("post", id)
                .user("author", actor)
                .str("event", "created")
                .text("title", &a.title)
                .text("body", &a.body)
                .strs("tags", &a.tags)
                .end(),
            Action::PostEdited(a) => {
                let row = w
                    .row(sink, fact("posts"), env)
                    .item("post", a.post_id)
                    .user("author", actor)
                    .str("event", "edited")
                    .opt_text("title", a.title.as_deref())
                    .opt_text("body", a.body.as_deref());
                match &a.tags {
                    Some(tags) => row.strs("tags", tags).end(),
                    None => row.end(),
                }
            }
            Action::PostDeleted(a) => w
                .row(sink, fact("posts"), env)
                .item("post", a.post_id)
                .user("author", actor)
                .str("event", "deleted")
                .end(),
            Action::ApproachCreated(a) => w
                .row(sink, fact("approaches"), env)
                .new_item("approach", id)
                .opt_item("post", a.post_id)
                .user("author", actor)
                .str("event", "created")
                .text("title", &a.title)
                .text("body", &a.body)
                .end(),
            Action::ApproachEdited(a) => w
                .row(sink, fact("approaches"), env)
                .item("approach", a.approach_id)
                .user("author", actor)
                .str("event", "edited")
                .opt_text("title", a.title.as_deref())
                .opt_text("body", a.body.as_deref())
                .end(),
            Action::ApproachDeleted(a) => w
                .row(sink, fact("approaches"), env)
                .item("approach", a.approach_id)
                .user("author", actor)
                .str("event", "deleted")
                .end(),
            Action::CommentCreated(a) => w
                .row(sink, fact("comments"), env)
                .new_item("comment", id)
                .item("target", a.target_id)
                .opt_item("parent", a.parent_id)
                .user("author", actor)
                .str("event", "created")
                .text("body", &a.body)
                .end(),
            Action::CommentDeleted(a) => w
                .row(sink, fact("comments"), env)
                .item("comment", a.comment_id)
                .user("author", actor)
                .str("event", "deleted")
                .end(),
            Action::ReactionAdded(a) => w
                .row(sink, fact("reactions"), env)
                .item("target", a.target_id)
                .user("user", actor)
                .str("kind", &wire(&a.kind))
                .bool("removed", false)
                .end(),
            Action::ReactionRemoved(a) => w
                .row(sink, fact("reactions"), env)
                .item("target", a.target_id)
                .user("user", actor)
                .str("kind", &wire(&a.kind))
                .bool("removed", true)
                .end(),
            Action::DonationMade(a) => w
                .row(sink, fact("donations"), env)
                .new_item("donation", id)
                .item("target", a.target_id)
                .user("donor", actor)
                .i64("amount_minor", a.amount_minor)
                .str("currency", a.currency.as_str())
                .end(),
            Action::CampaignCreated(a) => w
                .row(sink, fact("campaigns"), env)
                .new_item("campaign", id)
                .item("target", a.target_id)
                .user("owner", actor)
                .str("event", "created")
                .i64("goal_minor", a.goal_minor)
                .str("currency", a.currency.as_str())
                .day("ends_day", a.ends_at.date_naive())
                .end(),
            Action::CampaignClosed(a) => w
                .row(sink, fact("campaigns"), env)
                .item("campaign", a.campaign_id)
                .user("owner", actor)
                .str("event", "closed")
                .end(),
            Action::EventCreated(a) => {
                let row = w
                    .row(sink, fact("events"), env)
                    .new_item("event_id", id)
                    .user("organizer", actor)
                    .str("event", "created")
                    .text("title", &a.title)
                    .text("description", &a.description)
                    .hour("starts_hour", Some(a.starts_at))
                    .hour("ends_hour", Some(a.ends_at))
                    .bool("online", a.online_url.is_some());
                match a.capacity {
                    Some(c) => row.i64("capacity", c).end(),
                    None => row.end(),
                }
            }
            Action::EventUpdated(a) => {
                let online = match (&a.online_url, &a.location) {
                    (Some(_), _) => Some(true),
                    (None, Some(_)) => Some(false),
                    (None, None) => None,
                };
                let row = w
                    .row(sink, fact("events"), env)
                    .item("event_id", a.event_id)
                    .user("organizer", actor)
                    .str("event", "updated")
                    .opt_text("title", a.title.as_deref())
                    .opt_text("description", a.description.as_deref())
                    .hour("starts_hour", a.starts_at)
                    .hour("ends_hour", a.ends_at)
                    .opt_bool("online", online);
                match a.capacity {
                    Some(c) => row.i64("capacity", c).end(),
                    None => row.end(),
                }
            }
            Action::EventCancelled(a) => w
                .row(sink, fact("events"), env)
                .item("event_id", a.event_id)
                .user("organizer", actor)
                .str("event", "cancelled")
                .end(),
            Action::EventRsvp(a) => w
                .row(sink, fact("event_rsvps"), env)
                .item("event_id", a.event_id)
                .user("user", actor)
                .str("status", &wire(&a.status))
                .end(),
            Action::JobOfferCreated(a) => {
                if a.to_user_id.is_some_and(|u| w.erased.contains(&u)) {
                    return;
                }
                let row = w
                    .row(sink, fact("job_offers"), env)
                    .new_item("offer", id)
                    .user("sender", actor)
                    .opt_user("recipient", a.to_user_id)
                    .str("event", "created")
                    .text("title", &a.title)
                    .text("description", &a.description)
                    .strs("skills", &a.skills);
                match &a.salary_band {
                    Some(b) => row.str("salary_band", &wire(b)).end(),
                    None => row.end(),
                }
            }
            Action::JobOfferAnswered(a) => w
                .row(sink, fact("job_offers"), env)
                .item("offer", a.offer_id)
                .user("sender", actor)
                .str("event", &format!("answered:{}", wire(&a.answer)))
                .end(),
            Action::JobOfferWithdrawn(a) => w
                .row(sink, fact("job_offers"), env)
                .item("offer", a.offer_id)
                .user("sender", actor)
                .str("event", "withdrawn")
                .end(),
            Action::FollowCreated(a) => w.edge(sink, env, a.user_id, "follow"),
            Action::FollowRemoved(a) => w.edge(sink, env, a.user_id, "unfollow"),
            Action::BlockCreated(a) => w.edge(sink, env, a.user_id, "block"),
            Action::BlockRemoved(a) => w.edge(sink, env, a.user_id, "unblock"),
            Action::ResumeUpdated(a) => w
                .row(sink, fact("resumes"), env)
                .user("user", actor)
                .text("text", &a.text)
                .strs("skills", &a.skills)
                .end(),
            Action::ExploreViewed(a) => {
                let table = fact("explore_interactions");
                let me = w.recent(Domain::User, actor);
                for (rank, item) in a.item_ids.iter().enumerate() {
                    w.row(sink, table, env)
                        .str("user", me.as_str())
                        .item("item", *item)
                        .str("kind", "viewed")
                        .i64("rank", rank as i64)
                        .end();
                }
            }
            Action::ExploreClicked(a) => w.interaction(sink, env, a.item_id, "clicked"),
            Action::ExploreDismissed(a) => w.interaction(sink, env, a.item_id, "dismissed"),
            // Sessions, notification settings and image storage say nothing a procurer buys;
            // registrations and profiles feed the `users` dimension, built separately.
            Action::UserRegistered(_)
            | Action::UserLoggedIn(_)
            | Action::UserLoggedOut(_)
            | Action::AccountErased(_)
            | Action::ProfileUpdated(_)
            | Action::ImageUploaded(_)
            | Action::NotificationsRead(_)
            | Action::NotificationPreferencesUpdated(_) => {}
        }
    }
}

/// What writing rows needs of an [`Anonymizer`]: its keys, scrubber and caches, borrowed apart
/// from the bookkeeping that decides whether rows are written at all.
struct Writer<'a> {
    pseudo: &'a Pseudonymizer,
    scrub: &'a Scrubber,
    usernames: &'a HashMap<String, Uuid>,
    erased: &'a HashSet<Uuid>,
    recent: &'a mut HashMap<(Domain, Uuid), Pseudonym, foldhash::fast::RandomState>,
}

impl<'a> Writer<'a> {
    /// The pseudonym of `id`, from the recent ones when it is there.
    fn recent(&mut self, domain: Domain, id: Uuid) -> Pseudonym {
        if let Some(p) = self.recent.get(&(domain, id)) {
            return *p;
        }
        let p = self.pseudo.of_uuid(domain, id);
        if self.recent.len() >= RECENT_PSEUDONYMS {
            self.recent.clear();
        }
        self.recent.insert((domain, id), p);
        p
    }

    fn scrubbed(&self, text: &str) -> String {
        let mention = |name: &str| {
            self.usernames
                .get(&name.to_lowercase())
                .map(|id| self.pseudo.of_uuid(Domain::User, *id).as_str().to_owned())
        };
        self.scrub.scrub(text, &mention).text
    }

    /// Starts a row of fact table `table` for `env`.
    fn row<'w, S: Sink>(
        &'w mut self,
        sink: &'w mut S,
        table: usize,
        env: &Envelope,
    ) -> RowOut<'w, 'a, S> {
        let on = sink.begin(table, env.received_at, self.pseudo.key_id());
        RowOut { w: self, sink, on }
    }

    /// A `follows` row; none when the other user is erased.
    fn edge<S: Sink>(&mut self, sink: &mut S, env: &Envelope, other: Uuid, kind: &str) {
        if self.erased.contains(&other) {
            return;
        }
        self.row(sink, fact("follows"), env)
            .user("follower", env.actor_id)
            .user("followee", other)
            .str("kind", kind)
            .end();
    }

    fn interaction<S: Sink>(&mut self, sink: &mut S, env: &Envelope, item: Uuid, kind: &str) {
        self.row(sink, fact("explore_interactions"), env)
            .user("user", env.actor_id)
            .item("item", item)
            .str("kind", kind)
            .end();
    }
}

/// A [`Sink`] that wants no rows (catching up on the log).
struct Discard;

impl Sink for Discard {
    fn begin(&mut self, _: usize, _: DateTime<Utc>, _: &str) -> bool {
        false
    }
    fn str(&mut self, _: &'static str, _: &str) {}
    fn i64(&mut self, _: &'static str, _: i64) {}
    fn bool(&mut self, _: &'static str, _: bool) {}
    fn strs(&mut self, _: &'static str, _: &[String]) {}
    fn hour(&mut self, _: &'static str, _: DateTime<Utc>) {}
    fn day(&mut self, _: &'static str, _: NaiveDate) {}
    fn end(&mut self) {}
}
