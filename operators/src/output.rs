//! What an operator declares it writes, and the typed values it writes.
//!
//! A node adds columns to tables ([`ColumnSpec`]) and may bring whole tables of its own
//! ([`TableSpec`]): `probe` adds its columns to `videos`, `shots` brings `boundaries`, `window`
//! brings `clips`, a signature operator would bring `signatures`. Values are held in their
//! declared type ([`Value`]), never through an `f64` detour, so a 64-bit hash or a caption is
//! written losslessly. The pipeline turns declarations into Arrow schemas and values into Arrow
//! arrays generically; this module knows no Arrow, so the column types are kelp's own
//! [`ColumnType`], each of which is exactly one Arrow type.

/// The type of a column; each maps to one Arrow type (named in [`ColumnType::arrow_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Float32,
    Float64,
    Int32,
    Int64,
    UInt64,
    Boolean,
    Utf8,
    Binary,
    LargeBinary,
    /// Exactly this many bytes per value.
    FixedSizeBinary(i32),
    ListFloat32,
    /// A list of fixed-size byte strings of this width.
    ListFixedSizeBinary(i32),
}

impl ColumnType {
    /// The Arrow type's name as `kelp schema` prints it.
    pub fn arrow_name(self) -> String {
        match self {
            ColumnType::Float32 => "Float32".into(),
            ColumnType::Float64 => "Float64".into(),
            ColumnType::Int32 => "Int32".into(),
            ColumnType::Int64 => "Int64".into(),
            ColumnType::UInt64 => "UInt64".into(),
            ColumnType::Boolean => "Boolean".into(),
            ColumnType::Utf8 => "Utf8".into(),
            ColumnType::Binary => "Binary".into(),
            ColumnType::LargeBinary => "LargeBinary".into(),
            ColumnType::FixedSizeBinary(n) => format!("FixedSizeBinary({n})"),
            ColumnType::ListFloat32 => "List(Float32)".into(),
            ColumnType::ListFixedSizeBinary(n) => format!("List(FixedSizeBinary({n}))"),
        }
    }
}

/// One value of a column, in its declared type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    F32(f32),
    F64(f64),
    I32(i32),
    I64(i64),
    U64(u64),
    Bool(bool),
    Str(String),
    Bytes(Vec<u8>),
    ListF32(Vec<f32>),
    ListBytes(Vec<Vec<u8>>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as a number, for operators that read another's numeric column.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(x) => Some(x as f64),
            Value::F64(x) => Some(x),
            Value::I32(x) => Some(x as f64),
            Value::I64(x) => Some(x as f64),
            Value::U64(x) => Some(x as f64),
            Value::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    /// Short name of the variant, for type-mismatch messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::I32(_) => "i32",
            Value::I64(_) => "i64",
            Value::U64(_) => "u64",
            Value::Bool(_) => "bool",
            Value::Str(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::ListF32(_) => "list of f32",
            Value::ListBytes(_) => "list of byte strings",
        }
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

macro_rules! value_from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Self {
                Value::$v(x.into())
            }
        }
    )*};
}
value_from!(f32 => F32, f64 => F64, i32 => I32, i64 => I64, u64 => U64, bool => Bool,
    String => Str, &str => Str, Vec<u8> => Bytes, Vec<f32> => ListF32, Vec<Vec<u8>> => ListBytes);

/// A column a node adds to a table, with its unit and range for the schema docs.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub table: &'static str,
    pub name: &'static str,
    pub kind: ColumnType,
    /// False only for columns every row has (a table's own key columns).
    pub nullable: bool,
    /// Unit and range, then meaning.
    pub doc: &'static str,
}

impl ColumnSpec {
    /// A nullable column of `table`.
    pub const fn of(
        table: &'static str,
        name: &'static str,
        kind: ColumnType,
        doc: &'static str,
    ) -> Self {
        ColumnSpec {
            table,
            name,
            kind,
            nullable: true,
            doc,
        }
    }
    /// A nullable per-clip column.
    pub const fn clip(name: &'static str, kind: ColumnType, doc: &'static str) -> Self {
        Self::of(TABLE_CLIPS, name, kind, doc)
    }
    /// A nullable per-video column.
    pub const fn video(name: &'static str, kind: ColumnType, doc: &'static str) -> Self {
        Self::of(TABLE_VIDEOS, name, kind, doc)
    }
    /// The same column, never null.
    pub const fn required(mut self) -> Self {
        self.nullable = false;
        self
    }
}

/// A table a node brings: its name, key and own columns. Other nodes may add columns to it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    pub name: &'static str,
    /// The columns that identify a row (documentation and `kelp schema`).
    pub key: &'static [&'static str],
    /// One line on what a row is.
    pub doc: &'static str,
    pub columns: Vec<ColumnSpec>,
    /// When set, the table also gets every column added to that table (e.g. `rejected_clips`
    /// carries each `clips` column, so a dropped clip keeps the values it was judged on).
    pub mirrors: Option<&'static str>,
}

/// The per-source table: one row per input, written by the engine for every input.
pub const TABLE_VIDEOS: &str = "videos";
/// The per-clip table (brought by `window`).
pub const TABLE_CLIPS: &str = "clips";
/// Rows a node turned away, with the node and the reason.
pub const TABLE_REJECTIONS: &str = "rejections";
/// The `clips` rows of rejected clips, with the values they had when rejected.
pub const TABLE_REJECTED_CLIPS: &str = "rejected_clips";

/// Something a node makes that a later node may need (`probe`, `shots`, `clips`, `crop`, ...).
/// Open: an operator names its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Product(pub &'static str);

impl Product {
    pub const PROBE: Product = Product("probe");
    pub const SHOTS: Product = Product("shots");
    pub const CLIPS: Product = Product("clips");
    pub const CROP: Product = Product("crop");

    pub fn name(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for Product {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Everything a node declares about its inputs and outputs; known from its type alone, so
/// `kelp schema` and validation need no model files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    pub needs: Vec<Product>,
    pub produces: Vec<Product>,
    pub tables: Vec<TableSpec>,
    pub columns: Vec<ColumnSpec>,
}

impl Outputs {
    pub fn needs(mut self, p: &[Product]) -> Self {
        self.needs.extend_from_slice(p);
        self
    }
    pub fn produces(mut self, p: &[Product]) -> Self {
        self.produces.extend_from_slice(p);
        self
    }
    pub fn columns(mut self, c: &[ColumnSpec]) -> Self {
        self.columns.extend_from_slice(c);
        self
    }
    pub fn table(mut self, t: TableSpec) -> Self {
        self.tables.push(t);
        self
    }
}

/// Rows of one table produced for one video, column by column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableRows {
    pub names: Vec<String>,
    /// Aligned with `names`; every column has `len` values.
    pub columns: Vec<Vec<Value>>,
    pub len: usize,
}

impl TableRows {
    /// Empty rows with these columns.
    pub fn with_columns<S: AsRef<str>>(names: &[S]) -> Self {
        TableRows {
            names: names.iter().map(|n| n.as_ref().to_string()).collect(),
            columns: vec![Vec::new(); names.len()],
            len: 0,
        }
    }

    /// Appends one row, values in the order of `names`.
    pub fn push(&mut self, row: Vec<Value>) -> Result<(), String> {
        if row.len() != self.names.len() {
            return Err(format!(
                "a row of {} values for {} columns ({})",
                row.len(),
                self.names.len(),
                self.names.join(", ")
            ));
        }
        for (col, v) in self.columns.iter_mut().zip(row) {
            col.push(v);
        }
        self.len += 1;
        Ok(())
    }

    /// Adds (or replaces) a whole column; it must have one value per row.
    pub fn set_column(&mut self, name: &str, values: Vec<Value>) -> Result<(), String> {
        if values.len() != self.len {
            return Err(format!(
                "column \"{name}\" has {} values for {} rows",
                values.len(),
                self.len
            ));
        }
        match self.names.iter().position(|n| n == name) {
            Some(i) => self.columns[i] = values,
            None => {
                self.names.push(name.to_string());
                self.columns.push(values);
            }
        }
        Ok(())
    }

    /// Sets one value of row `row` (a column not there yet is added, null elsewhere); a row out
    /// of range is ignored.
    pub fn set_cell(&mut self, row: usize, name: &str, value: Value) {
        if row >= self.len {
            return;
        }
        let i = match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.names.push(name.to_string());
                self.columns.push(vec![Value::Null; self.len]);
                self.names.len() - 1
            }
        };
        self.columns[i][row] = value;
    }

    pub fn column(&self, name: &str) -> Option<&[Value]> {
        let i = self.names.iter().position(|n| n == name)?;
        Some(&self.columns[i])
    }

    /// Appends every row of `other` (columns matched by name; missing ones become nulls).
    pub fn append(&mut self, other: TableRows) {
        for name in &other.names {
            if !self.names.contains(name) {
                self.names.push(name.clone());
                self.columns.push(vec![Value::Null; self.len]);
            }
        }
        let add = other.len;
        for (i, name) in self.names.iter().enumerate() {
            match other.names.iter().position(|n| n == name) {
                Some(j) => self.columns[i].extend(other.columns[j].iter().cloned()),
                None => self.columns[i].extend(std::iter::repeat_n(Value::Null, add)),
            }
        }
        self.len += add;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_check_their_width_and_appends_fill_missing_columns_with_nulls() {
        let mut a = TableRows::with_columns(&["id", "x"]);
        a.push(vec!["a".into(), 1i64.into()]).unwrap();
        assert!(a.push(vec!["b".into()]).is_err());
        let mut b = TableRows::with_columns(&["id", "y"]);
        b.push(vec!["b".into(), Value::U64(u64::MAX)]).unwrap();
        a.append(b);
        assert_eq!(a.len, 2);
        assert_eq!(a.column("x").unwrap(), &[Value::I64(1), Value::Null]);
        assert_eq!(a.column("y").unwrap(), &[Value::Null, Value::U64(u64::MAX)]);
        assert!(a.set_column("z", vec![Value::Null]).is_err());
    }
}
