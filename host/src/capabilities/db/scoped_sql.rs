//! `ScopedSql`: the parser-level guard between a module and the tenant
//! database.
//!
//! Every statement a module sends is parsed with `sqlparser`, every table it
//! names is mapped into the module's namespace (`members` becomes
//! `"membership__members"`), and the statement is refused when it reaches a
//! table the module does not own, writes a dependency's exported table, or
//! is of a kind modules may not run. DDL is accepted only from migrations.
//! The statement that runs is the rewritten AST rendered back to SQL, never
//! the module's text.
//!
//! Why this is sound: after rewriting, every table reference is either a
//! physical name with this module's prefix, an exported table of a declared
//! dependency, or a CTE alias. CTE aliases must be valid module table names
//! (no `__`, no `sqlite_` prefix), and every module table in a tenant
//! database contains `__`, so an alias that escapes its scope can only name
//! a table that does not exist.

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use souk_module_registry::{Manifest, Slug, TableName};
use sqlparser::ast::{
    AlterTableOperation, ColumnOption, FromTable, Ident, ObjectName, ObjectNamePart, ObjectType,
    Query, RenameTableNameKind, Statement, TableConstraint, TableFactor, TableObject, VisitMut,
    VisitorMut,
};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;

use super::sandbox::Policy;

/// Why a statement was refused before it reached the database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlRefusal {
    /// The text is not valid SQL, or not exactly one statement.
    #[error("SQL syntax: {0}")]
    Syntax(String),
    /// The statement reaches a table the module may not use that way, or is
    /// of a forbidden kind.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// DDL outside a migration.
    #[error("{0} is only allowed in migrations")]
    DdlOutsideMigration(String),
}

/// Where a statement comes from, which decides what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementSource {
    /// A module call at run time: one DML statement or query.
    Runtime,
    /// A migration's up or down SQL: DDL on own tables, and DML.
    Migration,
}

/// What a module's SQL may reach: its own namespace and the tables its
/// dependencies export to it.
#[derive(Debug, Clone)]
pub struct SqlScope {
    slug: Slug,
    prefix: String,
    /// Dependency slug (as written in SQL, `_` or `-`) -> exported tables.
    readable: BTreeMap<String, (Slug, Vec<TableName>)>,
    /// Everything [`SqlScope::rewrite`]'s answer depends on, as text: two
    /// scopes with the same key rewrite every text alike, so rewrites are
    /// cached under it (`super::rewrite_cache`).
    key: Arc<str>,
    /// The authorizer's policy for runtime statements, built once.
    runtime_policy: Arc<Policy>,
}

/// The longest SQL text [`SqlScope::rewrite`] accepts, in bytes as the
/// module wrote it: one `query` or `execute` text, or one migration's whole
/// `up` or `down` text (all its statements together). It bounds the
/// parser's work per text, not per call: a call may send many texts. The
/// rewritten statements are longer (quoted, prefixed names) and are bounded
/// again, each on its own, by SQLite on the tenant connection
/// ([`sandbox::MAX_SQL_BYTES`](super::sandbox::MAX_SQL_BYTES), 256 KiB).
pub const MAX_SQL_BYTES: usize = 64 * 1024;

/// How deep the parser may recurse (nested parentheses, sub-queries, CASE):
/// deeper text is refused as a syntax error before any tree is built.
pub const MAX_PARSE_DEPTH: usize = 64;

/// How deeply parentheses may nest in one statement. The parser backtracks
/// at some nested constructs (a nested `CAST(... AS ...)` is tried more than
/// one way at every level), so its work can grow exponentially with depth:
/// 50 nested casts never finished. Depth is counted on tokens, in linear
/// time, before the parser sees the text.
pub const MAX_NESTING: usize = 24;

/// Tokenizes `sql` once, checks its nesting on the tokens and parses them.
fn parse(sql: &str) -> Result<Vec<Statement>, SqlRefusal> {
    use sqlparser::tokenizer::Tokenizer;
    let tokens = Tokenizer::new(&SQLiteDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| SqlRefusal::Syntax(e.to_string()))?;
    check_nesting(tokens.iter().map(|t| &t.token))?;
    Parser::new(&SQLiteDialect {})
        .with_recursion_limit(MAX_PARSE_DEPTH)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| SqlRefusal::Syntax(e.to_string()))
}

impl SqlScope {
    /// The scope of `manifest`'s module, given the manifests of the installed
    /// modules it depends on.
    pub fn new<'a>(
        manifest: &Manifest,
        dependencies: impl IntoIterator<Item = &'a Manifest>,
    ) -> Self {
        let mut readable = BTreeMap::new();
        for dep in dependencies {
            let tables = dep.exports.clone();
            readable.insert(
                dep.slug.as_str().to_owned(),
                (dep.slug.clone(), tables.clone()),
            );
            readable.insert(
                dep.slug.as_str().replace('-', "_"),
                (dep.slug.clone(), tables),
            );
        }
        let mut key = manifest.slug.as_str().to_owned();
        for (written, (slug, tables)) in &readable {
            key.push_str(&format!("\n{written}={slug}:"));
            for table in tables {
                key.push_str(&format!("{table},"));
            }
        }
        let prefix = manifest.slug.table_prefix();
        let runtime_policy = Arc::new(policy_of(&prefix, &readable, false));
        SqlScope {
            prefix,
            slug: manifest.slug.clone(),
            readable,
            key: key.into(),
            runtime_policy,
        }
    }

    /// What this scope's rewrites depend on (see the field's docs).
    pub fn key(&self) -> &Arc<str> {
        &self.key
    }

    /// The policy of [`SqlScope::policy`] without DDL, built once with the
    /// scope: the one every runtime statement runs under.
    pub fn runtime_policy(&self) -> &Arc<Policy> {
        &self.runtime_policy
    }

    /// The physical name of one of this module's tables.
    pub fn physical(&self, table: &TableName) -> String {
        format!("{}{}", self.prefix, table)
    }

    /// The prefix of this module's physical table names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Parses `sql`, checks it against the scope and returns the rewritten
    /// statements to run, in order. Runtime SQL must be exactly one statement.
    ///
    /// # Errors
    /// A [`SqlRefusal`] naming the table and the rule it breaks.
    pub fn rewrite(
        &self,
        sql: &str,
        source: StatementSource,
    ) -> Result<Vec<RewrittenStatement>, SqlRefusal> {
        if sql.len() > MAX_SQL_BYTES {
            return Err(SqlRefusal::Syntax(format!(
                "statement is longer than {MAX_SQL_BYTES} bytes"
            )));
        }
        let statements = parse(sql)?;
        if statements.is_empty() {
            return Err(SqlRefusal::Syntax("no statement".into()));
        }
        if source == StatementSource::Runtime && statements.len() != 1 {
            return Err(SqlRefusal::Syntax(format!(
                "expected one statement, found {}",
                statements.len()
            )));
        }
        statements
            .into_iter()
            .map(|s| self.rewrite_statement(s, source))
            .collect()
    }

    fn rewrite_statement(
        &self,
        mut statement: Statement,
        source: StatementSource,
    ) -> Result<RewrittenStatement, SqlRefusal> {
        let kind = classify(&statement);
        match (kind, source) {
            (Kind::Read | Kind::Write, _) | (Kind::Ddl, StatementSource::Migration) => {}
            (Kind::Ddl, StatementSource::Runtime) => {
                return Err(SqlRefusal::DdlOutsideMigration(describe(&statement)));
            }
            (Kind::Other, _) => {
                return Err(SqlRefusal::Forbidden(format!(
                    "{} statements may not be run by modules",
                    describe(&statement)
                )));
            }
        }

        // Relations the visitor does not see, rewritten explicitly and
        // checked as own tables.
        self.rewrite_ddl_names(&mut statement)?;

        // Refuses a write of a shape modules may not use, before any name
        // is resolved; the target is looked at again once rewritten.
        write_target(&statement)?;
        let ctes = collect_cte_names(&mut statement)?;
        let mut refusal = None;
        let mut dependency_reads = Vec::new();
        let _ = sqlparser::ast::visit_relations_mut(&mut statement, |name| {
            match self.resolve(name, &ctes) {
                Ok(Resolved::Cte) => {}
                Ok(Resolved::Own(physical)) => *name = physical_name(physical),
                Ok(Resolved::Dependency { physical, display }) => {
                    dependency_reads.push((physical.clone(), display));
                    *name = physical_name(physical);
                }
                Err(e) => {
                    refusal = Some(e);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        if matches!(kind, Kind::Ddl)
            && let Some((_, display)) = dependency_reads.first()
        {
            return Err(SqlRefusal::Forbidden(format!(
                "table {display} belongs to another module: migrations may change only \
                 this module's own tables"
            )));
        }
        if let Ok(Some(target)) = write_target(&statement) {
            let target_physical = object_text(target);
            if let Some((_, display)) = dependency_reads.iter().find(|(p, _)| *p == target_physical)
            {
                return Err(SqlRefusal::Forbidden(format!(
                    "table {display} belongs to another module and is read-only here: \
                     modules may read a dependency's exported tables but never write them"
                )));
            }
        }
        let sql = statement.to_string();
        check_round_trip(&sql)?;
        Ok(RewrittenStatement {
            sql,
            is_insert: matches!(statement, Statement::Insert(_)),
            is_ddl: matches!(kind, Kind::Ddl),
        })
    }

    /// The policy SQLite's authorizer enforces for this scope's statements:
    /// with `ddl`, for a migration's DDL statement (see [`super::sandbox`]);
    /// without, for everything else (a migration's DML included).
    pub fn policy(&self, ddl: bool) -> Policy {
        policy_of(&self.prefix, &self.readable, ddl)
    }

    fn own(&self, name: &ObjectName, what: &str) -> Result<String, SqlRefusal> {
        match parts(name)?.as_slice() {
            [table] => {
                let table = TableName::parse(&table.value).map_err(|e| {
                    SqlRefusal::Forbidden(format!("{what} name {:?} {e}", table.value))
                })?;
                Ok(self.physical(&table))
            }
            _ => Err(SqlRefusal::Forbidden(format!(
                "{what} {name} must be one of this module's own tables, named without a schema"
            ))),
        }
    }

    fn resolve(&self, name: &ObjectName, ctes: &HashSet<String>) -> Result<Resolved, SqlRefusal> {
        match parts(name)?.as_slice() {
            [table] => {
                if ctes.contains(&table.value.to_ascii_lowercase()) {
                    return Ok(Resolved::Cte);
                }
                let table = TableName::parse(&table.value).map_err(|e| {
                    SqlRefusal::Forbidden(format!("table name {:?} {e}", table.value))
                })?;
                Ok(Resolved::Own(self.physical(&table)))
            }
            [schema, table] => {
                let schema_text = schema.value.to_ascii_lowercase();
                let table_text = table.value.to_ascii_lowercase();
                if schema_text == self.slug.as_str()
                    || schema_text == self.slug.as_str().replace('-', "_")
                {
                    let table = TableName::parse(&table_text).map_err(|e| {
                        SqlRefusal::Forbidden(format!("table name {table_text:?} {e}"))
                    })?;
                    return Ok(Resolved::Own(self.physical(&table)));
                }
                let display = format!("{schema_text}.{table_text}");
                let Some((slug, exports)) = self.readable.get(&schema_text) else {
                    return Err(SqlRefusal::Forbidden(format!(
                        "table {display} is not reachable: a module may use only its own tables \
                         and the tables its declared dependencies export"
                    )));
                };
                let Some(table) = exports.iter().find(|t| t.as_str() == table_text) else {
                    return Err(SqlRefusal::Forbidden(format!(
                        "table {display} is not exported by module {slug}: only exported tables \
                         of a dependency may be read"
                    )));
                };
                Ok(Resolved::Dependency {
                    physical: format!("{}{}", slug.table_prefix(), table),
                    display,
                })
            }
            _ => Err(SqlRefusal::Forbidden(format!(
                "table reference {name} has too many parts: use <table> or <dependency>.<table>"
            ))),
        }
    }

    /// Rewrites the names that `visit_relations_mut` does not visit:
    /// index names, DROP targets, RENAME targets and foreign-key targets.
    fn rewrite_ddl_names(&self, statement: &mut Statement) -> Result<(), SqlRefusal> {
        match statement {
            Statement::CreateTable(create) => {
                if create.temporary {
                    return Err(SqlRefusal::Forbidden(
                        "temporary tables are not supported".into(),
                    ));
                }
                if create.query.is_some() || create.like.is_some() || create.clone.is_some() {
                    return Err(SqlRefusal::Forbidden(
                        "CREATE TABLE ... AS/LIKE/CLONE is not supported; declare columns".into(),
                    ));
                }
                for column in &mut create.columns {
                    for option in &mut column.options {
                        if let ColumnOption::ForeignKey { foreign_table, .. } = &mut option.option {
                            *foreign_table =
                                physical_name(self.own(foreign_table, "foreign key target")?);
                        }
                    }
                }
                for constraint in &mut create.constraints {
                    if let TableConstraint::ForeignKey { foreign_table, .. } = constraint {
                        *foreign_table =
                            physical_name(self.own(foreign_table, "foreign key target")?);
                    }
                }
            }
            Statement::CreateIndex(index) => {
                let Some(name) = &mut index.name else {
                    return Err(SqlRefusal::Forbidden(
                        "CREATE INDEX needs an index name".into(),
                    ));
                };
                *name = physical_name(self.own(name, "index")?);
            }
            Statement::AlterTable { operations, .. } => {
                for operation in operations {
                    match operation {
                        AlterTableOperation::AddColumn { column_def, .. } => {
                            for option in &mut column_def.options {
                                if let ColumnOption::ForeignKey { foreign_table, .. } =
                                    &mut option.option
                                {
                                    *foreign_table = physical_name(
                                        self.own(foreign_table, "foreign key target")?,
                                    );
                                }
                            }
                        }
                        AlterTableOperation::DropColumn { .. }
                        | AlterTableOperation::RenameColumn { .. } => {}
                        AlterTableOperation::RenameTable { table_name } => {
                            let (RenameTableNameKind::As(name) | RenameTableNameKind::To(name)) =
                                table_name;
                            *name = physical_name(self.own(name, "table")?);
                        }
                        other => {
                            return Err(SqlRefusal::Forbidden(format!(
                                "ALTER TABLE ... {other} is not supported"
                            )));
                        }
                    }
                }
            }
            Statement::Drop {
                object_type, names, ..
            } => {
                let what = match object_type {
                    ObjectType::Table => "table",
                    ObjectType::Index => "index",
                    other => {
                        return Err(SqlRefusal::Forbidden(format!(
                            "DROP {other} is not supported"
                        )));
                    }
                };
                for name in names {
                    *name = physical_name(self.own(name, what)?);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn check_nesting<'t>(
    tokens: impl IntoIterator<Item = &'t sqlparser::tokenizer::Token>,
) -> Result<(), SqlRefusal> {
    use sqlparser::tokenizer::Token;
    let mut depth = 0usize;
    for token in tokens {
        match token {
            Token::LParen => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(SqlRefusal::Syntax(format!(
                        "parentheses nest deeper than {MAX_NESTING} levels"
                    )));
                }
            }
            Token::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Refuses a rewritten statement whose text does not parse back into
/// itself: the printer must not change what the statement means (a type
/// modifier printed without its quotes once turned the rest of a statement
/// into a comment and its comment into SQL). Printing, parsing and printing
/// again must give the same text.
fn check_round_trip(sql: &str) -> Result<(), SqlRefusal> {
    let unchanged = match parse(sql) {
        Ok(again) => again.len() == 1 && again[0].to_string() == sql,
        Err(_) => false,
    };
    if unchanged {
        Ok(())
    } else {
        Err(SqlRefusal::Syntax(
            "the statement uses a construct the host cannot pass on exactly as written; \
             write it more plainly"
                .into(),
        ))
    }
}

/// One statement ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrittenStatement {
    /// The SQL to execute.
    pub sql: String,
    /// Whether it inserts (so a last-insert id is meaningful).
    pub is_insert: bool,
    /// Whether it is DDL (only ever from a migration).
    pub is_ddl: bool,
}

/// The authorizer's policy for a module with table `prefix` that may read
/// `readable`.
fn policy_of(
    prefix: &str,
    readable: &BTreeMap<String, (Slug, Vec<TableName>)>,
    ddl: bool,
) -> Policy {
    let readable = readable.values().flat_map(|(slug, tables)| {
        let prefix = slug.table_prefix();
        tables.iter().map(move |t| format!("{prefix}{t}"))
    });
    Policy::new(prefix, readable, ddl)
}

enum Resolved {
    Cte,
    Own(String),
    Dependency { physical: String, display: String },
}

#[derive(Clone, Copy)]
enum Kind {
    Read,
    Write,
    Ddl,
    Other,
}

fn classify(statement: &Statement) -> Kind {
    match statement {
        Statement::Query(_) => Kind::Read,
        Statement::Insert(_) | Statement::Update { .. } | Statement::Delete(_) => Kind::Write,
        Statement::CreateTable(_)
        | Statement::CreateIndex(_)
        | Statement::AlterTable { .. }
        | Statement::Drop { .. } => Kind::Ddl,
        _ => Kind::Other,
    }
}

fn describe(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    words.join(" ").to_ascii_uppercase()
}

fn parts(name: &ObjectName) -> Result<Vec<&Ident>, SqlRefusal> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => Ok(ident),
            ObjectNamePart::Function(_) => {
                Err(SqlRefusal::Forbidden(format!("{name} is not a table name")))
            }
        })
        .collect()
}

fn physical_name(physical: String) -> ObjectName {
    ObjectName::from(vec![Ident::with_quote('"', physical)])
}

fn object_text(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.clone(),
            ObjectNamePart::Function(f) => f.name.value.clone(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The table a write statement modifies (as named before rewriting, or as
/// rewritten after).
fn write_target(statement: &Statement) -> Result<Option<&ObjectName>, SqlRefusal> {
    Ok(match statement {
        Statement::Insert(insert) => match &insert.table {
            TableObject::TableName(name) => Some(name),
            TableObject::TableFunction(_) => {
                return Err(SqlRefusal::Forbidden(
                    "INSERT INTO a function is not allowed".into(),
                ));
            }
        },
        Statement::Update { table, .. } => match &table.relation {
            TableFactor::Table { name, .. } => Some(name),
            _ => return Err(SqlRefusal::Forbidden("UPDATE must name a table".into())),
        },
        Statement::Delete(delete) => {
            if !delete.tables.is_empty() {
                return Err(SqlRefusal::Forbidden(
                    "multi-table DELETE is not allowed".into(),
                ));
            }
            let from = match &delete.from {
                FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => from,
            };
            match from.as_slice() {
                [one] if one.joins.is_empty() => match &one.relation {
                    TableFactor::Table { name, .. } => Some(name),
                    _ => return Err(SqlRefusal::Forbidden("DELETE must name a table".into())),
                },
                _ => {
                    return Err(SqlRefusal::Forbidden(
                        "DELETE must name exactly one table".into(),
                    ));
                }
            }
        }
        _ => None,
    })
}

struct CteCollector {
    names: HashSet<String>,
    refusal: Option<SqlRefusal>,
}

impl VisitorMut for CteCollector {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                let name = cte.alias.name.value.to_ascii_lowercase();
                if let Err(e) = TableName::parse(&name) {
                    self.refusal = Some(SqlRefusal::Forbidden(format!("CTE name {name:?} {e}")));
                    return ControlFlow::Break(());
                }
                if name.starts_with("sqlite") {
                    self.refusal = Some(SqlRefusal::Forbidden(format!(
                        "CTE name {name:?} is reserved"
                    )));
                    return ControlFlow::Break(());
                }
                self.names.insert(name);
            }
        }
        ControlFlow::Continue(())
    }
}

fn collect_cte_names(statement: &mut Statement) -> Result<HashSet<String>, SqlRefusal> {
    let mut collector = CteCollector {
        names: HashSet::new(),
        refusal: None,
    };
    let _ = statement.visit(&mut collector);
    match collector.refusal {
        Some(refusal) => Err(refusal),
        None => Ok(collector.names),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(yaml: &str) -> Manifest {
        Manifest::parse(yaml).unwrap()
    }

    fn scopes() -> SqlScope {
        let membership = manifest(
            "slug: membership\nname: M\nversion: 1.0.0\ncategory: community\napi: 0.1.0\nexports: [members]\n",
        );
        let card = manifest(
            "slug: digital-card\nname: C\nversion: 1.0.0\ncategory: community\napi: 0.1.0\ndependencies:\n  membership: \"^1\"\n",
        );
        SqlScope::new(&card, [&membership])
    }

    fn run(sql: &str) -> Result<String, SqlRefusal> {
        scopes()
            .rewrite(sql, StatementSource::Runtime)
            .map(|mut v| v.remove(0).sql)
    }

    fn migrate(sql: &str) -> Result<Vec<String>, SqlRefusal> {
        scopes()
            .rewrite(sql, StatementSource::Migration)
            .map(|v| v.into_iter().map(|s| s.sql).collect())
    }

    #[test]
    fn own_tables_are_namespaced() {
        let sql =
            run("SELECT c.id FROM cards c JOIN templates t ON t.id = c.template WHERE c.id = ?1")
                .unwrap();
        assert!(sql.contains("\"digital_card__cards\""), "{sql}");
        assert!(sql.contains("\"digital_card__templates\""), "{sql}");
        let sql = run("INSERT INTO cards (id) VALUES (?) RETURNING id").unwrap();
        assert!(sql.contains("\"digital_card__cards\""), "{sql}");
        let sql = run("UPDATE cards SET x = 1 WHERE id IN (SELECT id FROM cards)").unwrap();
        assert_eq!(sql.matches("digital_card__cards").count(), 2, "{sql}");
        let sql = run("DELETE FROM cards WHERE id = 1").unwrap();
        assert!(sql.contains("\"digital_card__cards\""), "{sql}");
    }

    #[test]
    fn dependency_exports_are_readable_not_writable() {
        let sql = run("SELECT m.name FROM membership.members m").unwrap();
        assert!(sql.contains("\"membership__members\""), "{sql}");
        let e = run("INSERT INTO membership.members (name) VALUES ('x')").unwrap_err();
        assert!(e.to_string().contains("read-only"), "{e}");
        let e = run("UPDATE membership.members SET name = 'x'").unwrap_err();
        assert!(e.to_string().contains("membership.members"), "{e}");
        let e = run("DELETE FROM membership.members").unwrap_err();
        assert!(matches!(e, SqlRefusal::Forbidden(_)), "{e}");
        let e = run("SELECT * FROM membership.secrets").unwrap_err();
        assert!(e.to_string().contains("not exported"), "{e}");
    }

    #[test]
    fn other_modules_and_system_tables_are_unreachable() {
        for sql in [
            "SELECT * FROM forum.posts",
            "SELECT * FROM main.membership__members",
            "SELECT * FROM membership__members",
            "SELECT * FROM a.b.c",
            "SELECT * FROM (SELECT 1) x, \"forum__posts\"",
            "WITH forum__posts AS (SELECT 1) SELECT * FROM forum__posts",
            "WITH sqlite_x AS (SELECT 1) SELECT * FROM sqlite_x",
        ] {
            assert!(matches!(run(sql), Err(SqlRefusal::Forbidden(_))), "{sql}");
        }
        // sqlite_master maps into the namespace and so does not exist.
        let sql = run("SELECT * FROM sqlite_master").unwrap();
        assert!(sql.contains("\"digital_card__sqlite_master\""), "{sql}");
    }

    #[test]
    fn ctes_stay_local() {
        let sql = run("WITH recent AS (SELECT * FROM cards) SELECT * FROM recent").unwrap();
        assert!(sql.contains("FROM recent"), "{sql}");
        assert!(sql.contains("\"digital_card__cards\""), "{sql}");
    }

    #[test]
    fn runtime_refuses_ddl_and_other_statements() {
        for sql in [
            "CREATE TABLE x (a INT)",
            "DROP TABLE cards",
            "ALTER TABLE cards ADD COLUMN y INT",
            "CREATE INDEX i ON cards (a)",
        ] {
            assert!(
                matches!(run(sql), Err(SqlRefusal::DdlOutsideMigration(_))),
                "{sql}"
            );
        }
        for sql in [
            "PRAGMA table_info(cards)",
            "ATTACH DATABASE 'x' AS y",
            "VACUUM",
            "BEGIN",
            "COMMIT",
        ] {
            assert!(run(sql).is_err(), "{sql}");
        }
        assert!(matches!(
            run("SELECT 1; SELECT 2"),
            Err(SqlRefusal::Syntax(_))
        ));
        assert!(matches!(run("SELEKT"), Err(SqlRefusal::Syntax(_))));
    }

    #[test]
    fn names_inside_writes_behind_ctes_are_namespaced() {
        let sql = run(
            "WITH pragma_table_list AS (SELECT 1) DELETE FROM cards WHERE EXISTS \
             (SELECT typeof(1) FROM \"sqlite_temp_master\" s44, cards s56 WHERE 1) AND 0",
        );
        eprintln!("{sql:?}");
        let sql = sql.unwrap();
        assert!(!sql.contains("\"sqlite_temp_master\""), "{sql}");
    }

    #[test]
    fn deep_nesting_is_refused_before_the_parser_backtracks() {
        for depth in [MAX_NESTING + 1, 50, 1_000] {
            let casts = format!(
                "SELECT {}1{}",
                "CAST(".repeat(depth),
                " AS INTEGER)".repeat(depth)
            );
            let e = run(&casts).unwrap_err();
            assert!(e.to_string().contains("nest deeper"), "{depth}: {e}");
        }
        let ok = format!(
            "SELECT {}1{} FROM cards",
            "CAST(".repeat(MAX_NESTING),
            " AS INTEGER)".repeat(MAX_NESTING)
        );
        let started = std::time::Instant::now();
        let sql = run(&ok).unwrap();
        eprintln!(
            "{MAX_NESTING} nested casts parsed and rewritten in {:?}",
            started.elapsed()
        );
        assert!(sql.contains("digital_card__cards"), "{sql}");
    }

    #[test]
    fn migrations_namespace_every_name() {
        let out = migrate(
            "CREATE TABLE cards (id INTEGER PRIMARY KEY, t INTEGER REFERENCES templates(id));\n\
             CREATE INDEX cards_t ON cards (t);\n\
             ALTER TABLE cards RENAME TO cards2;\n\
             DROP INDEX cards_t; DROP TABLE cards2",
        )
        .unwrap();
        assert_eq!(out.len(), 5);
        assert!(
            out[0].contains("\"digital_card__cards\"")
                && out[0].contains("\"digital_card__templates\""),
            "{}",
            out[0]
        );
        assert!(
            out[1].contains("\"digital_card__cards_t\"")
                && out[1].contains("ON \"digital_card__cards\""),
            "{}",
            out[1]
        );
        assert!(out[2].contains("\"digital_card__cards2\""), "{}", out[2]);
        assert!(out[3].contains("\"digital_card__cards_t\""), "{}", out[3]);
        assert!(out[4].contains("\"digital_card__cards2\""), "{}", out[4]);
        for sql in [
            "CREATE TABLE x (m INTEGER REFERENCES membership.members(id))",
            "DROP TABLE membership.members",
            "CREATE VIEW v AS SELECT 1",
            "CREATE TRIGGER t AFTER INSERT ON cards BEGIN DELETE FROM cards; END",
            "CREATE TEMP TABLE x (a INT)",
            "ALTER TABLE membership.members ADD COLUMN x INT",
        ] {
            assert!(migrate(sql).is_err(), "{sql}");
        }
    }
}
