//! The PostgreSQL backend (also for Postgres-compatible distributed engines). Statements are
//! prepared once per connection and cached; multi-row inserts go in one statement per table so a
//! 100-resource transaction is a handful of round trips, not hundreds.

use std::collections::HashMap;

use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, NoTls, Statement};

use crate::StoreError;
use crate::sql::{Conn, Dialect, Param, Row, Value};

/// A PostgreSQL connection with its statement cache.
pub struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl PgConn {
    /// Connects to `url` (`postgres://user:password@host:port/db`), over TLS with certificate
    /// verification when the URL asks for it (`sslmode=verify-full&sslrootcert=…`, see
    /// [`crate::pg_tls`]).
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let env_root = std::env::var_os("PGSSLROOTCERT").map(std::path::PathBuf::from);
        let (url, tls) = crate::pg_tls::split(url, env_root)?;
        let client = match tls {
            None => Client::connect(&url, NoTls),
            Some(tls) => {
                let mut config: postgres::Config =
                    url.parse().map_err(|e| StoreError::backend("postgres connection string", e))?;
                config.ssl_mode(postgres::config::SslMode::Require);
                config.connect(crate::pg_tls::connector(&tls)?)
            }
        }
        .map_err(|e| StoreError::backend("postgres connect", e))?;
        Ok(PgConn { client, statements: HashMap::new() })
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).map_err(map_err)?;
        if self.statements.len() > 512 {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

/// A NULL of whatever type the statement expects.
#[derive(Debug)]
struct AnyNull;

impl ToSql for AnyNull {
    fn to_sql(&self, _: &Type, _: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    postgres::types::to_sql_checked!();
}

fn pg_params<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| -> &(dyn ToSql + Sync) {
            match p {
                Param::Null => &AnyNull,
                Param::I64(v) => v,
                Param::Text(s) => s,
            }
        })
        .collect()
}

fn read_row(r: &postgres::Row) -> Result<Row, StoreError> {
    let mut vals = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let t = col.type_();
        let v = if *t == Type::INT8 {
            r.try_get::<_, Option<i64>>(i).map_err(map_err)?.map_or(Value::Null, Value::I64)
        } else if *t == Type::INT4 {
            r.try_get::<_, Option<i32>>(i).map_err(map_err)?.map_or(Value::Null, |v| Value::I64(v.into()))
        } else if *t == Type::INT2 {
            r.try_get::<_, Option<i16>>(i).map_err(map_err)?.map_or(Value::Null, |v| Value::I64(v.into()))
        } else if *t == Type::BOOL {
            r.try_get::<_, Option<bool>>(i).map_err(map_err)?.map_or(Value::Null, |v| Value::I64(v.into()))
        } else {
            r.try_get::<_, Option<String>>(i).map_err(map_err)?.map_or(Value::Null, Value::Text)
        };
        vals.push(v);
    }
    Ok(Row(vals))
}

impl Conn for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let stmt = self.statement(sql)?;
        self.client.execute(&stmt, &pg_params(params)).map_err(map_err)
    }

    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let stmt = self.statement(sql)?;
        let rows = self.client.query(&stmt, &pg_params(params)).map_err(map_err)?;
        rows.iter().map(read_row).collect()
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.client.batch_execute(sql).map_err(map_err)
    }

    fn insert_rows(&mut self, table: &str, columns: &[&str], rows: &[Vec<Param<'_>>]) -> Result<(), StoreError> {
        if rows.is_empty() || columns.is_empty() {
            return Ok(());
        }
        // PostgreSQL allows 65,535 parameters per statement.
        let per_stmt = (60_000 / columns.len()).max(1);
        for chunk in rows.chunks(per_stmt) {
            let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
            let mut n = 0;
            for (ri, _) in chunk.iter().enumerate() {
                if ri > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for ci in 0..columns.len() {
                    if ci > 0 {
                        sql.push_str(", ");
                    }
                    n += 1;
                    sql.push('$');
                    sql.push_str(&n.to_string());
                }
                sql.push(')');
            }
            let flat: Vec<Param<'_>> = chunk.iter().flat_map(|r| r.iter().copied()).collect();
            let stmt = self.statement(&sql)?;
            self.client.execute(&stmt, &pg_params(&flat)).map_err(map_err)?;
        }
        Ok(())
    }
}

fn map_err(e: postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        if db.code() == &postgres::error::SqlState::UNIQUE_VIOLATION {
            return StoreError::Constraint(db.message().to_owned());
        }
        if db.code() == &postgres::error::SqlState::T_R_SERIALIZATION_FAILURE {
            return StoreError::Constraint(db.message().to_owned());
        }
    }
    StoreError::backend("postgres", e)
}
