//! The small SQL layer both backends implement: parameters, rows and a connection trait.
//!
//! Queries are written once, with PostgreSQL-style `$1` placeholders; the SQLite connection
//! rewrites them to `?1` (SQLite numbers `$name` parameters by first appearance, which would
//! silently misbind a query that uses `$2` before `$1`).

use crate::StoreError;

/// A query parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param<'a> {
    /// NULL.
    Null,
    /// A 64-bit integer (BIGINT in both dialects).
    I64(i64),
    /// Text.
    Text(&'a str),
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(s: &'a str) -> Self {
        Param::Text(s)
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(s: &'a String) -> Self {
        Param::Text(s)
    }
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::I64(v)
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Param::Null, Param::Text)
    }
}

impl From<Option<i64>> for Param<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Param::Null, Param::I64)
    }
}

/// A value read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// NULL.
    Null,
    /// An integer.
    I64(i64),
    /// Text.
    Text(String),
}

/// A row read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// The integer in column `i` (0 for NULL or text; the schema never stores those where an
    /// integer is read).
    pub fn i64(&self, i: usize) -> i64 {
        match self.0.get(i) {
            Some(Value::I64(v)) => *v,
            _ => 0,
        }
    }

    /// The integer in column `i`, or None for NULL.
    pub fn opt_i64(&self, i: usize) -> Option<i64> {
        match self.0.get(i) {
            Some(Value::I64(v)) => Some(*v),
            _ => None,
        }
    }

    /// The text in column `i` ("" for NULL).
    pub fn str(&self, i: usize) -> &str {
        self.opt_str(i).unwrap_or("")
    }

    /// The text in column `i`, or None for NULL.
    pub fn opt_str(&self, i: usize) -> Option<&str> {
        match self.0.get(i) {
            Some(Value::Text(s)) => Some(s),
            _ => None,
        }
    }

    /// Takes the text in column `i`.
    pub fn take_str(&mut self, i: usize) -> Option<String> {
        match self.0.get_mut(i) {
            Some(v @ Value::Text(_)) => match std::mem::replace(v, Value::Null) {
                Value::Text(s) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Which SQL dialect a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3 (embedded).
    Sqlite,
    /// PostgreSQL (and compatible engines).
    Postgres,
}

/// A database connection, as the store uses it.
pub trait Conn: Send {
    /// The dialect.
    fn dialect(&self) -> Dialect;
    /// Runs a statement; returns rows affected.
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError>;
    /// Runs a query.
    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError>;
    /// Runs several statements separated by `;` with no parameters (migrations).
    fn batch(&mut self, sql: &str) -> Result<(), StoreError>;
    /// Inserts many rows into `table` (`columns` names, each row as many params as columns).
    fn insert_rows(&mut self, table: &str, columns: &[&str], rows: &[Vec<Param<'_>>]) -> Result<(), StoreError>;
}

/// Converts `$N` placeholders to `?N` for SQLite.
pub(crate) fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(sqlite_placeholders("SELECT $2, $10 FROM t WHERE a = $1"), "SELECT ?2, ?10 FROM t WHERE a = ?1");
    }
}
