//! The tables of a DAG's dataset, assembled from what its nodes declare, and the generic
//! conversion of typed rows into Arrow batches.
//!
//! Every dataset has `videos` (one row per input) and `rejections`; each node then brings tables
//! of its own and adds columns to existing ones, in DAG order ([`DatasetSchema::build`]). Nothing
//! here knows what a column means: rows arrive as [`TableRows`] and are converted by column name
//! and declared type. `kelp schema` prints [`markdown`].

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, FixedSizeBinaryBuilder, Float32Builder,
    Float64Builder, Int32Builder, Int64Builder, LargeBinaryBuilder, ListBuilder, StringBuilder,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use kelp_operators::{ColumnSpec, ColumnType, Outputs, TableRows, TableSpec, Value};

use crate::error::{PipelineError, Result};

/// The Arrow type of a declared column type.
pub fn arrow_type(kind: ColumnType) -> DataType {
    match kind {
        ColumnType::Float32 => DataType::Float32,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Int32 => DataType::Int32,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::UInt64 => DataType::UInt64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Utf8 => DataType::Utf8,
        ColumnType::Binary => DataType::Binary,
        ColumnType::LargeBinary => DataType::LargeBinary,
        ColumnType::FixedSizeBinary(n) => DataType::FixedSizeBinary(n),
        ColumnType::ListFloat32 => {
            DataType::List(Arc::new(Field::new("item", DataType::Float32, true)))
        }
        ColumnType::ListFixedSizeBinary(n) => DataType::List(Arc::new(Field::new(
            "item",
            DataType::FixedSizeBinary(n),
            true,
        ))),
    }
}

/// One table of a dataset: its declaration and Arrow schema.
#[derive(Debug, Clone)]
pub struct TableSchema {
    pub name: String,
    pub key: Vec<String>,
    pub doc: String,
    /// Every column with the node (operator name) that declared it.
    pub columns: Vec<(String, ColumnSpec)>,
    pub schema: SchemaRef,
}

impl TableSchema {
    fn new(spec: &TableSpec, by: &str) -> Self {
        let mut t = TableSchema {
            name: spec.name.to_string(),
            key: spec.key.iter().map(|k| k.to_string()).collect(),
            doc: spec.doc.to_string(),
            columns: Vec::new(),
            schema: Arc::new(Schema::empty()),
        };
        for c in &spec.columns {
            t.columns.push((by.to_string(), c.clone()));
        }
        t.rebuild();
        t
    }

    fn rebuild(&mut self) {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|(_, c)| Field::new(c.name, arrow_type(c.kind), c.nullable))
            .collect();
        self.schema = Arc::new(Schema::new(fields));
    }

    /// These rows (of one or more videos) as one batch of this table's schema.
    pub fn batch(&self, parts: &[&TableRows]) -> Result<RecordBatch> {
        batch_of(&self.name, &self.schema, parts)
    }
}

/// The tables of one DAG's dataset, in the order they are written.
#[derive(Debug, Clone)]
pub struct DatasetSchema {
    tables: Vec<TableSchema>,
    /// Table → the tables that mirror its columns.
    mirrors: BTreeMap<String, Vec<String>>,
}

impl DatasetSchema {
    /// The base tables only (`videos`, `rejections`).
    pub fn base() -> Self {
        let mut s = DatasetSchema {
            tables: Vec::new(),
            mirrors: BTreeMap::new(),
        };
        for t in kelp_operators::rows::source_tables() {
            s.tables.push(TableSchema::new(&t, "kelp"));
        }
        s
    }

    /// Adds what one node declares: its tables, then its columns (mirrored where asked). Fails
    /// when a table or column is declared twice or a column names a table no earlier node
    /// brings.
    pub fn add(&mut self, node: &str, outputs: &Outputs) -> std::result::Result<(), String> {
        for t in &outputs.tables {
            self.add_table(node, t)?;
        }
        self.add_columns(node, &outputs.columns)
    }

    /// Adds a table `node` brings (and registers it as a mirror of another, if it is one).
    fn add_table(&mut self, node: &str, t: &TableSpec) -> std::result::Result<(), String> {
        if self.table(t.name).is_some() {
            return Err(format!(
                "table \"{}\" is brought twice; each table comes from one node",
                t.name
            ));
        }
        self.tables.push(TableSchema::new(t, node));
        if let Some(of) = t.mirrors {
            self.mirrors
                .entry(of.to_string())
                .or_default()
                .push(t.name.to_string());
        }
        Ok(())
    }

    /// Adds columns `node` puts into existing tables (and into the tables mirroring them).
    fn add_columns(
        &mut self,
        node: &str,
        columns: &[ColumnSpec],
    ) -> std::result::Result<(), String> {
        for c in columns {
            let mut targets = vec![c.table.to_string()];
            targets.extend(self.mirrors.get(c.table).cloned().unwrap_or_default());
            for (i, table) in targets.iter().enumerate() {
                let Some(t) = self.tables.iter_mut().find(|t| &t.name == table) else {
                    return Err(format!(
                        "column \"{}\" goes into table \"{}\", which no node before it brings",
                        c.name, c.table
                    ));
                };
                if t.columns.iter().any(|(_, x)| x.name == c.name) {
                    if i == 0 {
                        return Err(format!(
                            "column \"{}\" of table \"{}\" is produced twice; each operator may appear once per DAG",
                            c.name, c.table
                        ));
                    }
                    continue;
                }
                t.columns.push((
                    node.to_string(),
                    ColumnSpec {
                        table: c.table,
                        ..c.clone()
                    },
                ));
                t.rebuild();
            }
        }
        Ok(())
    }

    /// The schema of a DAG whose nodes declare `nodes` (node name, outputs), in DAG order.
    pub fn build<'a>(
        nodes: impl IntoIterator<Item = (&'a str, &'a Outputs)>,
    ) -> std::result::Result<Self, String> {
        let mut s = Self::base();
        for (node, outputs) in nodes {
            s.add(node, outputs)?;
        }
        Ok(s)
    }

    pub fn tables(&self) -> &[TableSchema] {
        &self.tables
    }

    pub fn table(&self, name: &str) -> Option<&TableSchema> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The rows of every table for a group of finished videos (each a map table → rows).
    /// A non-empty table that the DAG does not declare is a bug in an operator: an error.
    pub fn batches(
        &self,
        group: &[BTreeMap<String, TableRows>],
    ) -> Result<Vec<(String, RecordBatch)>> {
        for video in group {
            if let Some((name, _)) = video
                .iter()
                .find(|(n, r)| r.len > 0 && self.table(n).is_none())
            {
                return Err(PipelineError::Write {
                    what: format!("table {name}"),
                    message: "rows for a table no node of the DAG declares".into(),
                });
            }
        }
        self.tables
            .iter()
            .map(|t| {
                let parts: Vec<&TableRows> = group.iter().filter_map(|v| v.get(&t.name)).collect();
                Ok((t.name.clone(), t.batch(&parts)?))
            })
            .collect()
    }
}

/// Converts rows to a batch of `schema`: columns matched by name, absent ones null, columns the
/// schema lacks ignored; a value of the wrong type is an error naming table and column.
pub fn batch_of(table: &str, schema: &SchemaRef, parts: &[&TableRows]) -> Result<RecordBatch> {
    let rows: usize = parts.iter().map(|p| p.len).sum();
    let mut arrays = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let values = parts.iter().flat_map(|p| match p.column(field.name()) {
            Some(col) => Box::new(col.iter()) as Box<dyn Iterator<Item = &Value>>,
            None => Box::new(std::iter::repeat_n(&Value::Null, p.len)),
        });
        let array =
            array_of(field.data_type(), values, rows).map_err(|message| PipelineError::Write {
                what: format!("{table}.{}", field.name()),
                message,
            })?;
        arrays.push(array);
    }
    RecordBatch::try_new_with_options(
        schema.clone(),
        arrays,
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| PipelineError::Write {
        what: format!("table {table}"),
        message: e.to_string(),
    })
}

fn mismatch(ty: &DataType, v: &Value) -> String {
    format!("a {} value for a {ty} column", v.type_name())
}

/// One Arrow array of type `ty` from typed values; floats that are not finite become null.
fn array_of<'a>(
    ty: &DataType,
    values: impl Iterator<Item = &'a Value>,
    rows: usize,
) -> std::result::Result<ArrayRef, String> {
    macro_rules! build {
        ($builder:expr, $($pat:pat => $val:expr),+) => {{
            let mut b = $builder;
            for v in values {
                match v {
                    Value::Null => b.append_null(),
                    $($pat => b.append_value($val),)+
                    other => return Err(mismatch(ty, other)),
                }
            }
            Ok(Arc::new(b.finish()) as ArrayRef)
        }};
    }
    match ty {
        DataType::Float64 => {
            let mut b = Float64Builder::with_capacity(rows);
            for v in values {
                match v {
                    Value::F64(x) => b.append_option(x.is_finite().then_some(*x)),
                    Value::F32(x) => b.append_option(x.is_finite().then_some(f64::from(*x))),
                    Value::Null => b.append_null(),
                    other => return Err(mismatch(ty, other)),
                }
            }
            Ok(Arc::new(b.finish()))
        }
        DataType::Float32 => {
            let mut b = Float32Builder::with_capacity(rows);
            for v in values {
                match v {
                    Value::F32(x) => b.append_option(x.is_finite().then_some(*x)),
                    Value::Null => b.append_null(),
                    other => return Err(mismatch(ty, other)),
                }
            }
            Ok(Arc::new(b.finish()))
        }
        DataType::Int64 => build!(Int64Builder::with_capacity(rows),
            Value::I64(x) => *x, Value::I32(x) => i64::from(*x)),
        DataType::Int32 => build!(Int32Builder::with_capacity(rows), Value::I32(x) => *x),
        DataType::UInt64 => build!(UInt64Builder::with_capacity(rows), Value::U64(x) => *x),
        DataType::Boolean => build!(BooleanBuilder::with_capacity(rows), Value::Bool(x) => *x),
        DataType::Utf8 => build!(StringBuilder::new(), Value::Str(x) => x),
        DataType::Binary => build!(BinaryBuilder::new(), Value::Bytes(x) => x),
        DataType::LargeBinary => build!(LargeBinaryBuilder::new(), Value::Bytes(x) => x),
        DataType::FixedSizeBinary(n) => {
            let mut b = FixedSizeBinaryBuilder::with_capacity(rows, *n);
            for v in values {
                match v {
                    Value::Bytes(x) => b
                        .append_value(x)
                        .map_err(|_| format!("{} bytes for a {ty} column", x.len()))?,
                    Value::Null => b.append_null(),
                    other => return Err(mismatch(ty, other)),
                }
            }
            Ok(Arc::new(b.finish()))
        }
        DataType::List(item) => match item.data_type() {
            DataType::Float32 => {
                let mut b = ListBuilder::new(Float32Builder::new());
                for v in values {
                    match v {
                        Value::ListF32(xs) => {
                            b.values().append_slice(xs);
                            b.append(true);
                        }
                        Value::Null => b.append_null(),
                        other => return Err(mismatch(ty, other)),
                    }
                }
                Ok(Arc::new(b.finish()))
            }
            DataType::FixedSizeBinary(n) => {
                let mut b = ListBuilder::new(FixedSizeBinaryBuilder::new(*n));
                for v in values {
                    match v {
                        Value::ListBytes(xs) => {
                            for x in xs {
                                b.values()
                                    .append_value(x)
                                    .map_err(|_| format!("{} bytes for a {ty} item", x.len()))?;
                            }
                            b.append(true);
                        }
                        Value::Null => b.append_null(),
                        other => return Err(mismatch(ty, other)),
                    }
                }
                Ok(Arc::new(b.finish()))
            }
            other => Err(format!("no conversion to a list of {other}")),
        },
        other => Err(format!("no conversion to {other}")),
    }
}

/// Markdown reference of every table: the ones every dataset has, then each operator's tables
/// and the columns it adds (named after the operator), for `kelp schema` and the README.
pub fn markdown(operators: &[(&str, Outputs)]) -> String {
    let mut schema = DatasetSchema::base();
    // Every table first, then every operator's columns (even ones that could not share a DAG);
    // a conflict is reported instead of failing.
    for (name, outputs) in operators {
        for t in &outputs.tables {
            if let Err(e) = schema.add_table(name, t) {
                tracing::warn!("kelp schema: {name}: {e}");
            }
        }
    }
    for (name, outputs) in operators {
        if let Err(e) = schema.add_columns(name, &outputs.columns) {
            tracing::warn!("kelp schema: {name}: {e}");
        }
    }
    let mut out = String::new();
    for t in &schema.tables {
        out.push_str(&format!(
            "### `{}`\n\n{} (key: {}).\n\n| column | type | unit, range, meaning |\n|---|---|---|\n",
            t.name,
            t.doc,
            t.key.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        ));
        for (by, c) in &t.columns {
            let null = if c.nullable { ", nullable" } else { "" };
            let from = if by == "kelp" || t.columns.iter().all(|(b, _)| b == by) {
                String::new()
            } else {
                format!(" (`{by}`)")
            };
            out.push_str(&format!(
                "| `{}` | {}{null} | {}{from} |\n",
                c.name,
                c.kind.arrow_name(),
                c.doc
            ));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, FixedSizeBinaryArray, StringArray, UInt64Array};
    use kelp_operators::ColumnSpec;

    fn outputs_with_table() -> Outputs {
        Outputs::default().table(TableSpec {
            name: "signatures",
            key: &["clip_id", "frame"],
            doc: "test",
            columns: vec![
                ColumnSpec::of("signatures", "clip_id", ColumnType::Utf8, "id").required(),
                ColumnSpec::of(
                    "signatures",
                    "hash",
                    ColumnType::FixedSizeBinary(32),
                    "hash",
                ),
                ColumnSpec::of("signatures", "bits", ColumnType::UInt64, "bits"),
            ],
            mirrors: None,
        })
    }

    #[test]
    fn typed_values_convert_losslessly() {
        let s = DatasetSchema::build([("sig", &outputs_with_table())]).unwrap();
        let t = s.table("signatures").unwrap();
        let mut rows = TableRows::with_columns(&["clip_id", "hash", "bits"]);
        rows.push(vec![
            "é✓".into(),
            vec![0xffu8; 32].into(),
            Value::U64(u64::MAX),
        ])
        .unwrap();
        rows.push(vec!["b".into(), Value::Null, Value::Null])
            .unwrap();
        let b = t.batch(&[&rows]).unwrap();
        let bits = b.column(2).as_any().downcast_ref::<UInt64Array>().unwrap();
        assert_eq!(bits.value(0), u64::MAX);
        assert!(bits.is_null(1));
        let hash = b
            .column(1)
            .as_any()
            .downcast_ref::<FixedSizeBinaryArray>()
            .unwrap();
        assert_eq!(hash.value(0), &[0xff; 32]);
        let id = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(id.value(0), "é✓");
    }

    #[test]
    fn wrong_types_and_widths_are_errors_naming_the_column() {
        let s = DatasetSchema::build([("sig", &outputs_with_table())]).unwrap();
        let t = s.table("signatures").unwrap();
        let mut rows = TableRows::with_columns(&["clip_id", "hash"]);
        rows.push(vec!["a".into(), vec![1u8; 31].into()]).unwrap();
        let e = t.batch(&[&rows]).unwrap_err().to_string();
        assert!(
            e.contains("signatures.hash") && e.contains("31 bytes"),
            "{e}"
        );
        let mut rows = TableRows::with_columns(&["clip_id", "bits"]);
        rows.push(vec!["a".into(), Value::F64(1.0)]).unwrap();
        let e = t.batch(&[&rows]).unwrap_err().to_string();
        assert!(e.contains("signatures.bits") && e.contains("f64"), "{e}");
    }

    #[test]
    fn a_table_or_column_declared_twice_or_into_a_missing_table_is_refused() {
        let o = outputs_with_table();
        let e = DatasetSchema::build([("a", &o), ("b", &o)]).unwrap_err();
        assert!(e.contains("brought twice"), "{e}");
        let col = Outputs::default().columns(&[ColumnSpec::clip("x", ColumnType::Float64, "x")]);
        let e = DatasetSchema::build([("x", &col)]).unwrap_err();
        assert!(e.contains("no node before it brings"), "{e}");
    }
}
