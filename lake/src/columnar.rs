//! The lake's tables as Delta schemas and Arrow record batches.
//!
//! One source of truth: [`delta_schema`] turns a [`TableSchema`] into the Delta schema the table
//! is created with, and the Arrow schema of every batch is derived from that Delta schema (so
//! list element names and timestamp zones are exactly what Delta readers expect).

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use deltalake::arrow::array::{
    ArrayRef, AsArray, BooleanArray, BooleanBuilder, Date32Builder, Int64Builder, ListBuilder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
use deltalake::kernel::{ArrayType, DataType, StructField, StructType};

use crate::anonymize::{ColType, POLICY_VERSION, Row, Sink, TABLES, TableSchema, Value, hour};

/// Days between 0001-01-01 (chrono's day 1) and the Unix epoch.
const UNIX_EPOCH_DAY: i32 = 719_163;

/// `d` as an Arrow `Date32`: days since the Unix epoch.
fn epoch_days(d: &NaiveDate) -> i32 {
    chrono::Datelike::num_days_from_ce(d) - UNIX_EPOCH_DAY
}

/// The Delta type of a column type.
fn delta_type(ty: ColType) -> DataType {
    match ty {
        ColType::Str => DataType::STRING,
        ColType::I64 => DataType::LONG,
        ColType::Bool => DataType::BOOLEAN,
        ColType::Strs => DataType::Array(Box::new(ArrayType::new(DataType::STRING, false))),
        ColType::Hour => DataType::TIMESTAMP,
        ColType::Day => DataType::DATE,
    }
}

/// The Delta schema `table` is created with.
pub fn delta_schema(table: &TableSchema) -> StructType {
    StructType::try_new(
        table
            .columns
            .iter()
            .map(|(name, ty, nullable)| StructField::new(*name, delta_type(*ty), *nullable)),
    )
    .expect("column names of a table are unique")
}

/// The Arrow schema of `table`'s batches, derived from [`delta_schema`].
pub fn arrow_schema(table: &TableSchema) -> Arc<ArrowSchema> {
    let schema: ArrowSchema = (&delta_schema(table))
        .try_into_arrow()
        .expect("every lake column type has an Arrow type");
    Arc::new(schema)
}

/// One column being built.
enum Column {
    Str(StringBuilder),
    I64(Int64Builder),
    Bool(BooleanBuilder),
    Strs(ListBuilder<StringBuilder>),
    Hour(TimestampMicrosecondBuilder),
    Day(Date32Builder),
}

impl Column {
    fn new(ty: ColType, field: &Field, rows: usize) -> Self {
        match ty {
            ColType::Str => Column::Str(StringBuilder::with_capacity(rows, rows * 16)),
            ColType::I64 => Column::I64(Int64Builder::with_capacity(rows)),
            ColType::Bool => Column::Bool(BooleanBuilder::with_capacity(rows)),
            ColType::Strs => {
                let element = match field.data_type() {
                    ArrowType::List(element) => element.clone(),
                    other => unreachable!("a list column has type {other}"),
                };
                Column::Strs(
                    ListBuilder::with_capacity(StringBuilder::new(), rows).with_field(element),
                )
            }
            ColType::Hour => {
                let tz = match field.data_type() {
                    ArrowType::Timestamp(_, tz) => tz.clone(),
                    other => unreachable!("a timestamp column has type {other}"),
                };
                Column::Hour(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone_opt(tz))
            }
            ColType::Day => Column::Day(Date32Builder::with_capacity(rows)),
        }
    }

    fn push(&mut self, value: &Value) {
        match (self, value) {
            (Column::Str(b), Value::Str(s)) => b.append_value(s),
            (Column::Str(b), _) => b.append_null(),
            (Column::I64(b), Value::I64(v)) => b.append_value(*v),
            (Column::I64(b), _) => b.append_null(),
            (Column::Bool(b), Value::Bool(v)) => b.append_value(*v),
            (Column::Bool(b), _) => b.append_null(),
            (Column::Strs(b), Value::Strs(list)) => {
                for s in list {
                    b.values().append_value(s);
                }
                b.append(true);
            }
            (Column::Strs(b), _) => b.append(false),
            (Column::Hour(b), Value::Hour(t)) => b.append_value(t.timestamp_micros()),
            (Column::Hour(b), _) => b.append_null(),
            (Column::Day(b), Value::Day(d)) => b.append_value(epoch_days(d)),
            (Column::Day(b), _) => b.append_null(),
        }
    }

    /// Appends a null; an error where the column is required.
    fn null(&mut self) {
        match self {
            Column::Str(b) => b.append_null(),
            Column::I64(b) => b.append_null(),
            Column::Bool(b) => b.append_null(),
            Column::Strs(b) => b.append(false),
            Column::Hour(b) => b.append_null(),
            Column::Day(b) => b.append_null(),
        }
    }

    /// Bytes of string data held (to size the next batch's builders).
    fn value_bytes(&self) -> usize {
        match self {
            Column::Str(b) => b.values_slice().len(),
            Column::Strs(b) => b.values_ref().values_slice().len(),
            _ => 0,
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Column::Str(mut b) => Arc::new(b.finish()),
            Column::I64(mut b) => Arc::new(b.finish()),
            Column::Bool(mut b) => Arc::new(b.finish()),
            Column::Strs(mut b) => Arc::new(b.finish()),
            Column::Hour(mut b) => Arc::new(b.finish()),
            Column::Day(mut b) => Arc::new(b.finish()),
        }
    }
}

/// The rows of one table as a record batch. Every row must belong to `table`; a value that
/// does not fit its column (a bug in the anonymizer) is an error, not a silent null.
pub fn record_batch<'a>(
    table: &TableSchema,
    schema: &Arc<ArrowSchema>,
    rows: impl ExactSizeIterator<Item = &'a Row>,
) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let mut columns: Vec<Column> = table
        .columns
        .iter()
        .zip(schema.fields())
        .map(|((_, ty, _), field)| Column::new(*ty, field, n))
        .collect();
    for row in rows {
        if row.table != table.name || row.values.len() != columns.len() {
            return Err(ArrowError::InvalidArgumentError(format!(
                "a {} row handed to the {} batch",
                row.table, table.name
            )));
        }
        for (i, value) in row.values.iter().enumerate() {
            let (name, ty, nullable) = table.columns[i];
            if !value.fits(ty, nullable) {
                return Err(ArrowError::InvalidArgumentError(format!(
                    "{}.{name}: {value:?} does not fit {ty:?}",
                    table.name
                )));
            }
            columns[i].push(value);
        }
    }
    RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(Column::finish).collect(),
    )
}

/// The columns of one fact table being filled by a [`FactBatch`].
struct TableColumns {
    table: &'static TableSchema,
    arrow: Arc<ArrowSchema>,
    columns: Vec<Column>,
    rows: usize,
    /// The column the open row's next value may go to.
    next: usize,
}

impl TableColumns {
    fn new(table: &'static TableSchema, rows: usize, bytes: &[usize]) -> Self {
        let arrow = arrow_schema(table);
        let columns = table
            .columns
            .iter()
            .zip(arrow.fields())
            .enumerate()
            .map(|(i, ((_, ty, _), field))| {
                let mut c = Column::new(*ty, field, rows);
                if let (Column::Str(b), Some(&n)) = (&mut c, bytes.get(i))
                    && n > 0
                {
                    *b = StringBuilder::with_capacity(rows, n);
                }
                c
            })
            .collect();
        Self {
            table,
            arrow,
            columns,
            rows: 0,
            next: 0,
        }
    }
}

/// The anonymizer's rows of one micro-batch, written straight into Arrow column builders (a
/// [`Sink`]): no row is ever an object of its own, so a value costs a copy into its column.
///
/// A value given for a column out of schema order, of the wrong type, or a required column
/// left without one (bugs in the anonymizer) makes [`FactBatch::finish`] fail rather than land
/// a wrong row.
pub struct FactBatch {
    tables: Vec<TableColumns>,
    /// Tables whose rows the current action must not add (they already hold it).
    skip: Vec<bool>,
    /// The table of the row being written.
    open: Option<usize>,
    /// Whether the current action wrote a row.
    wrote: bool,
    error: Option<ArrowError>,
}

impl std::fmt::Debug for FactBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FactBatch")
            .field(
                "rows",
                &self.tables.iter().map(|t| t.rows).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for FactBatch {
    fn default() -> Self {
        Self::sized(&BatchSizes::default())
    }
}

/// The sizes of a finished batch, to start the next one's builders at (rows and string bytes
/// per column, per table).
#[derive(Debug, Clone, Default)]
pub struct BatchSizes(Vec<(usize, Vec<usize>)>);

impl FactBatch {
    /// An empty batch whose builders start at `sizes` (those of an earlier batch, so they
    /// rarely grow; [`BatchSizes::default`] starts them small).
    pub fn sized(sizes: &BatchSizes) -> Self {
        let tables = TABLES
            .iter()
            .enumerate()
            .map(|(t, table)| {
                let (rows, bytes) = sizes.0.get(t).map_or((0, &[][..]), |(r, b)| (*r, &b[..]));
                TableColumns::new(table, rows, bytes)
            })
            .collect();
        Self {
            tables,
            skip: vec![false; TABLES.len()],
            open: None,
            wrote: false,
            error: None,
        }
    }

    /// Starts an action: rows of the tables `skip` marks are not wanted for it.
    pub fn start_action(&mut self, skip: Option<&[bool]>) {
        match skip {
            Some(s) => self.skip.copy_from_slice(s),
            None => self.skip.fill(false),
        }
        self.wrote = false;
    }

    /// Whether the action started last wrote a row.
    pub fn wrote(&self) -> bool {
        self.wrote
    }

    /// Rows written so far, all tables.
    pub fn rows(&self) -> usize {
        self.tables.iter().map(|t| t.rows).sum()
    }

    fn fail(&mut self, message: String) {
        self.error
            .get_or_insert(ArrowError::InvalidArgumentError(message));
    }

    /// Appends nulls to table `t`'s open row from its next column up to `until`; `false` (and
    /// the batch fails) when one of them is required.
    fn nulls_until(&mut self, t: usize, until: usize) -> bool {
        let table = &mut self.tables[t];
        let schema = table.table;
        for i in table.next..until {
            let (name, _, nullable) = schema.columns[i];
            if !nullable {
                self.fail(format!("{}.{name} left without a value", schema.name));
                return false;
            }
            table.columns[i].null();
        }
        table.next = until;
        true
    }

    /// The column of the open row named `column`, after null-filling the columns skipped.
    fn column(&mut self, name: &str, ty: ColType) -> Option<&mut Column> {
        let Some(t) = self.open else {
            self.fail(format!("{name}: a value outside a row"));
            return None;
        };
        let (schema, next) = (self.tables[t].table, self.tables[t].next);
        let Some(i) = (next..schema.columns.len()).find(|&i| schema.columns[i].0 == name) else {
            let message = format!(
                "{}.{name}: no such column after the last one set",
                schema.name
            );
            self.fail(message);
            return None;
        };
        if !self.nulls_until(t, i) {
            return None;
        }
        if schema.columns[i].1 != ty {
            let message = format!(
                "{}.{name} is {:?}, not {ty:?}",
                schema.name, schema.columns[i].1
            );
            self.fail(message);
            return None;
        }
        let table = &mut self.tables[t];
        table.next = i + 1;
        Some(&mut table.columns[i])
    }

    /// The finished record batch of every table (`None` where it got no rows), and the
    /// batch's sizes.
    pub fn finish(self) -> Result<(Vec<Option<RecordBatch>>, BatchSizes), ArrowError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut sizes = Vec::with_capacity(self.tables.len());
        let mut batches = Vec::with_capacity(self.tables.len());
        for table in self.tables {
            sizes.push((
                table.rows,
                table.columns.iter().map(Column::value_bytes).collect(),
            ));
            if table.rows == 0 {
                batches.push(None);
                continue;
            }
            let columns = table.columns.into_iter().map(Column::finish).collect();
            batches.push(Some(RecordBatch::try_new(table.arrow, columns)?));
        }
        Ok((batches, BatchSizes(sizes)))
    }
}

impl Sink for FactBatch {
    fn begin(&mut self, table: usize, received: DateTime<Utc>, key_id: &str) -> bool {
        if self.skip[table] {
            return false;
        }
        if self.open.is_some() {
            self.fail("a row begun inside another".into());
        }
        let cols = &mut self.tables[table];
        if let Column::Day(b) = &mut cols.columns[0] {
            b.append_value(epoch_days(&received.date_naive()));
        }
        if let Column::Hour(b) = &mut cols.columns[1] {
            b.append_value(hour(received).timestamp_micros());
        }
        if let Column::Str(b) = &mut cols.columns[2] {
            b.append_value(key_id);
        }
        if let Column::I64(b) = &mut cols.columns[3] {
            b.append_value(POLICY_VERSION);
        }
        cols.next = 4;
        self.open = Some(table);
        true
    }

    fn str(&mut self, column: &'static str, value: &str) {
        if let Some(Column::Str(b)) = self.column(column, ColType::Str) {
            b.append_value(value);
        }
    }

    fn i64(&mut self, column: &'static str, value: i64) {
        if let Some(Column::I64(b)) = self.column(column, ColType::I64) {
            b.append_value(value);
        }
    }

    fn bool(&mut self, column: &'static str, value: bool) {
        if let Some(Column::Bool(b)) = self.column(column, ColType::Bool) {
            b.append_value(value);
        }
    }

    fn strs(&mut self, column: &'static str, value: &[String]) {
        if let Some(Column::Strs(b)) = self.column(column, ColType::Strs) {
            for s in value {
                b.values().append_value(s);
            }
            b.append(true);
        }
    }

    fn hour(&mut self, column: &'static str, value: DateTime<Utc>) {
        if let Some(Column::Hour(b)) = self.column(column, ColType::Hour) {
            b.append_value(value.timestamp_micros());
        }
    }

    fn day(&mut self, column: &'static str, value: NaiveDate) {
        if let Some(Column::Day(b)) = self.column(column, ColType::Day) {
            b.append_value(epoch_days(&value));
        }
    }

    fn end(&mut self) {
        let Some(t) = self.open.take() else {
            self.fail("a row ended that was not begun".into());
            return;
        };
        if !self.nulls_until(t, self.tables[t].table.columns.len()) {
            return;
        }
        self.tables[t].rows += 1;
        self.wrote = true;
    }
}

/// `batch` of `table` without the rows that name one of `erased` (user pseudonyms) in any of
/// the table's user columns.
pub fn without_users(
    table: &TableSchema,
    batch: RecordBatch,
    erased: &HashSet<String>,
) -> Result<RecordBatch, ArrowError> {
    if erased.is_empty() {
        return Ok(batch);
    }
    let mut keep = vec![true; batch.num_rows()];
    for column in table.user_columns {
        let Some(values) = batch.column_by_name(column) else {
            continue;
        };
        let values = values.as_string::<i32>();
        for (i, v) in values.iter().enumerate() {
            if v.is_some_and(|p| erased.contains(p)) {
                keep[i] = false;
            }
        }
    }
    if keep.iter().all(|k| *k) {
        return Ok(batch);
    }
    filter_record_batch(&batch, &BooleanArray::from(keep))
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};
    use deltalake::arrow::array::{Array, AsArray};
    use deltalake::arrow::datatypes::{Date32Type, Int64Type, TimestampMicrosecondType};

    use super::*;
    use crate::anonymize::{TABLES, schema};

    fn post(title: Option<&str>, tags: Option<Vec<&str>>) -> Row {
        let t = schema("posts").unwrap();
        let mut values = vec![Value::Null; t.columns.len()];
        let set = |values: &mut Vec<Value>, col: &str, v: Value| {
            let i = t.columns.iter().position(|(c, _, _)| *c == col).unwrap();
            values[i] = v;
        };
        set(
            &mut values,
            "day",
            Value::Day(NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()),
        );
        set(
            &mut values,
            "hour",
            Value::Hour(Utc.with_ymd_and_hms(2026, 11, 26, 13, 0, 0).unwrap()),
        );
        set(&mut values, "key_id", Value::Str("k1".into()));
        set(&mut values, "policy_version", Value::I64(1));
        set(&mut values, "post", Value::Str("p".into()));
        set(&mut values, "author", Value::Str("a".into()));
        set(&mut values, "event", Value::Str("created".into()));
        set(
            &mut values,
            "title",
            title.map_or(Value::Null, |s| Value::Str(s.into())),
        );
        set(
            &mut values,
            "tags",
            tags.map_or(Value::Null, |t| {
                Value::Strs(t.into_iter().map(String::from).collect())
            }),
        );
        Row {
            table: "posts",
            values,
        }
    }

    #[test]
    fn every_table_has_an_arrow_schema_with_day_first() {
        for t in TABLES {
            let s = arrow_schema(t);
            assert_eq!(s.fields().len(), t.columns.len(), "{}", t.name);
            assert_eq!(s.field(0).name(), "day");
            assert_eq!(s.field(0).data_type(), &ArrowType::Date32);
            assert!(matches!(
                s.field(1).data_type(),
                ArrowType::Timestamp(_, Some(_))
            ));
        }
    }

    #[test]
    fn rows_become_columns_with_nulls_lists_dates_and_hours() {
        let t = schema("posts").unwrap();
        let s = arrow_schema(t);
        let rows = [post(Some("hello"), Some(vec!["a", "b"])), post(None, None)];
        let batch = record_batch(t, &s, rows.iter()).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let day = batch.column(0).as_primitive::<Date32Type>();
        assert_eq!(
            Date32Type::to_naive_date_opt(day.value(0)).unwrap(),
            NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
        );
        let hour = batch.column(1).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(
            hour.value(0),
            Utc.with_ymd_and_hms(2026, 11, 26, 13, 0, 0)
                .unwrap()
                .timestamp_micros()
        );
        let pv = batch.column(3).as_primitive::<Int64Type>();
        assert_eq!(pv.value(1), 1);
        let title = batch.column_by_name("title").unwrap().as_string::<i32>();
        assert_eq!(title.value(0), "hello");
        assert!(title.is_null(1));
        let tags = batch.column_by_name("tags").unwrap().as_list::<i32>();
        assert_eq!(tags.value(0).as_string::<i32>().value(1), "b");
        assert!(tags.is_null(1));
    }

    #[test]
    fn a_value_of_the_wrong_type_or_table_is_an_error() {
        let t = schema("posts").unwrap();
        let s = arrow_schema(t);
        let mut bad = post(Some("x"), None);
        bad.values[3] = Value::Str("one".into());
        assert!(record_batch(t, &s, [bad].iter()).is_err());
        let mut missing = post(Some("x"), None);
        missing.values[4] = Value::Null; // `post` is required
        assert!(record_batch(t, &s, [missing].iter()).is_err());
        let other = schema("follows").unwrap();
        assert!(record_batch(other, &arrow_schema(other), [post(None, None)].iter()).is_err());
    }

    #[test]
    fn a_fact_batch_refuses_rows_that_do_not_fit_and_fills_the_rest_with_nulls() {
        let posts = TABLES.iter().position(|t| t.name == "posts").unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 13, 5, 7).unwrap();
        let write = |columns: &[(&'static str, Option<i64>)]| {
            let mut b = FactBatch::default();
            b.start_action(None);
            assert!(b.begin(posts, at, "k1"));
            for &(c, v) in columns {
                match v {
                    Some(n) => b.i64(c, n),
                    None => b.str(c, "x"),
                }
            }
            b.end();
            b
        };
        // A required column left out, columns out of order, a value of the wrong type.
        for bad in [
            &[("post", None), ("event", None)][..],
            &[("author", None), ("post", None), ("event", None)][..],
            &[("post", None), ("author", None), ("event", Some(1))][..],
            &[
                ("post", None),
                ("author", None),
                ("event", None),
                ("colour", None),
            ][..],
        ] {
            assert!(write(bad).finish().is_err(), "{bad:?}");
        }
        let good = write(&[("post", None), ("author", None), ("event", None)]);
        assert!(good.wrote());
        assert_eq!(good.rows(), 1);
        let (batches, sizes) = good.finish().unwrap();
        assert!(
            batches
                .iter()
                .enumerate()
                .all(|(t, b)| b.is_some() == (t == posts))
        );
        let batch = batches[posts].as_ref().unwrap();
        let hour = batch.column(1).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(
            hour.value(0),
            Utc.with_ymd_and_hms(2026, 11, 26, 13, 0, 0)
                .unwrap()
                .timestamp_micros()
        );
        assert!(batch.column_by_name("title").unwrap().is_null(0));
        assert!(batch.column_by_name("tags").unwrap().is_null(0));
        // The next batch starts its builders at this one's size.
        let next = FactBatch::sized(&sizes);
        assert_eq!(next.rows(), 0);
        // A table the action is already in gets nothing.
        let mut b = FactBatch::default();
        let mut skip = vec![false; TABLES.len()];
        skip[posts] = true;
        b.start_action(Some(skip.as_slice()));
        assert!(!b.begin(posts, at, "k1"));
        assert!(!b.wrote());
        assert!(b.finish().is_ok());
        // A value with no row begun is a bug, not a silent drop.
        let mut b = FactBatch::default();
        b.str("post", "p");
        assert!(b.finish().is_err());
    }
}
