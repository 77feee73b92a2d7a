//! The lake's tables as Delta schemas and Arrow record batches.
//!
//! One source of truth: [`delta_schema`] turns a [`TableSchema`] into the Delta schema the table
//! is created with, and the Arrow schema of every batch is derived from that Delta schema (so
//! list element names and timestamp zones are exactly what Delta readers expect).

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
use deltalake::kernel::{ArrayType, DataType, StructField, StructType};

use crate::anonymize::{ColType, Row, TableSchema, Value};

/// Days between 0001-01-01 (chrono's day 1) and the Unix epoch.
const UNIX_EPOCH_DAY: i32 = 719_163;

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
            (Column::Day(b), Value::Day(d)) => {
                b.append_value(chrono::Datelike::num_days_from_ce(d) - UNIX_EPOCH_DAY)
            }
            (Column::Day(b), _) => b.append_null(),
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
}
