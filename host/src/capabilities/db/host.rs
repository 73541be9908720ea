//! The `db` interface of every API version, implemented over a
//! [`DbView`](super::DbView): the logic is [`ModuleDb`](super::ModuleDb)'s,
//! each version converts its generated types.

/// Implements the `db` interface (and the empty `types` one) of one API
/// version over that version's generated types; the logic is shared, only
/// the types differ between versions.
macro_rules! db_host {
    ($version:ident) => {
        mod $version {
            use crate::capabilities::db::{DbFailure, DbView, SqlRefusal, SqlValue};
            use crate::wit::$version::souk::module::{db as wit, types};

            fn from_wit(value: types::Value) -> SqlValue {
                match value {
                    types::Value::Null => SqlValue::Null,
                    types::Value::Integer(v) => SqlValue::Integer(v),
                    types::Value::Real(v) => SqlValue::Real(v),
                    types::Value::Text(v) => SqlValue::Text(v),
                    types::Value::Blob(v) => SqlValue::Blob(v),
                }
            }

            fn to_wit(value: SqlValue) -> types::Value {
                match value {
                    SqlValue::Null => types::Value::Null,
                    SqlValue::Integer(v) => types::Value::Integer(v),
                    SqlValue::Real(v) => types::Value::Real(v),
                    SqlValue::Text(v) => types::Value::Text(v),
                    SqlValue::Blob(v) => types::Value::Blob(v),
                }
            }

            fn failure_to_wit(failure: DbFailure) -> wit::DbError {
                let kind = match &failure {
                    DbFailure::Refused(SqlRefusal::Syntax(_)) => wit::ErrorKind::Syntax,
                    DbFailure::Refused(SqlRefusal::Forbidden(_)) => wit::ErrorKind::Forbidden,
                    DbFailure::Refused(SqlRefusal::DdlOutsideMigration(_)) => {
                        wit::ErrorKind::DdlOutsideMigration
                    }
                    DbFailure::Constraint(_) => wit::ErrorKind::Constraint,
                    _ => wit::ErrorKind::Other,
                };
                wit::DbError {
                    kind,
                    message: failure.to_string(),
                }
            }

            impl types::Host for DbView<'_> {}

            impl wit::Host for DbView<'_> {
                async fn query(
                    &mut self,
                    sql: String,
                    params: Vec<types::Value>,
                ) -> wasmtime::Result<Result<wit::RowSet, wit::DbError>> {
                    let params = params.into_iter().map(from_wit).collect();
                    let result = self.db.query(&sql, params).await;
                    if let Err(e) = &result {
                        tracing::debug!(tenant = %self.context.tenant_id, module = %self.context.module_slug, error = %e, "module query failed");
                    }
                    Ok(result
                        .map(|rows| wit::RowSet {
                            columns: rows.columns,
                            rows: rows
                                .rows
                                .into_iter()
                                .map(|r| r.into_iter().map(to_wit).collect())
                                .collect(),
                        })
                        .map_err(failure_to_wit))
                }

                async fn execute(
                    &mut self,
                    sql: String,
                    params: Vec<types::Value>,
                ) -> wasmtime::Result<Result<wit::ExecResult, wit::DbError>> {
                    let params = params.into_iter().map(from_wit).collect();
                    let result = self.db.execute(&sql, params).await;
                    if let Err(e) = &result {
                        tracing::debug!(tenant = %self.context.tenant_id, module = %self.context.module_slug, error = %e, "module statement failed");
                    }
                    Ok(result
                        .map(|(rows_affected, last_insert_id)| wit::ExecResult {
                            rows_affected,
                            last_insert_id,
                        })
                        .map_err(failure_to_wit))
                }
            }
        }
    };
}

db_host!(v0_1_0);
db_host!(v0_2_0);
db_host!(v0_3_0);
