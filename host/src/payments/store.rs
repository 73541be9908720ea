//! Invoices in the control-plane database: drafts, gap-free numbering when
//! issued, payment, voiding, and reading them back for listings.
//!
//! Every function takes the caller's connection or transaction; the
//! service decides what goes into one transaction (a checkout issues the
//! invoice and creates its payment attempt together; a confirmed payment
//! marks the invoice paid in the transaction that grants the subscription).

use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use time::OffsetDateTime;

use super::fiscal::FiscalYear;
use crate::billing::invoice::{Line, LineKind, Purchase, Totals};
use crate::billing::plans::Currency;
use crate::clock::rfc3339;

/// Why the invoice store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum InvoiceStoreError {
    /// The control-plane database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A stored row does not parse.
    #[error("invoice {id} is corrupt: {what}")]
    Corrupt {
        /// The invoice's id.
        id: String,
        /// What did not parse.
        what: String,
    },
    /// The invoice is not in the state the change needs (e.g. paying a
    /// void invoice). Nothing was written.
    #[error("invoice {id} is {status}, not {expected}")]
    WrongStatus {
        /// The invoice's id.
        id: String,
        /// Its status.
        status: String,
        /// The status the change needs.
        expected: &'static str,
    },
}

/// The seller printed on every invoice, from configuration
/// (`--seller-name`, `--seller-address`, `--seller-pan`), copied into each
/// invoice when it is issued so a later change does not rewrite history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seller {
    /// The seller's legal name.
    pub name: String,
    /// The seller's postal address.
    pub address: String,
    /// The seller's PAN / VAT registration number.
    pub pan: String,
}

/// The status of an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceStatus {
    /// Being prepared; has no number.
    Draft,
    /// Issued (numbered), waiting for payment.
    Open,
    /// Paid.
    Paid,
    /// Voided (a credit note on refund, or an open invoice abandoned).
    Void,
}

impl InvoiceStatus {
    /// The stable name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Open => "open",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Void => "void",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "draft" => InvoiceStatus::Draft,
            "open" => InvoiceStatus::Open,
            "paid" => InvoiceStatus::Paid,
            "void" => InvoiceStatus::Void,
            _ => return None,
        })
    }
}

/// An invoice as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    /// Its id (`inv_` and random hex).
    pub id: String,
    /// The tenant's internal id.
    pub tenant_id: String,
    /// `INV-2026/27-000001` once issued.
    pub number: Option<String>,
    /// Its status.
    pub status: InvoiceStatus,
    /// The currency of every amount on it.
    pub currency: Currency,
    /// Its lines, tax last.
    pub lines: Vec<Line>,
    /// Its totals (the sum of its lines).
    pub totals: Totals,
    /// What paying it grants.
    pub purchase: Purchase,
    /// The seller as configured when it was created.
    pub seller: Seller,
    /// The tenant's name.
    pub buyer_name: String,
    /// The tenant's PAN, if given.
    pub buyer_pan: Option<String>,
    /// Who confirmed the payment (`esewa`, `khalti`, `stripe`, `manual`).
    pub provider: Option<String>,
    /// The provider's reference of the payment (or the bank transfer's).
    pub provider_reference: Option<String>,
    /// Created (host clock, RFC 3339).
    pub created_at: String,
    /// Issued.
    pub issued_at: Option<String>,
    /// Paid.
    pub paid_at: Option<String>,
    /// Voided.
    pub voided_at: Option<String>,
}

/// What a new invoice holds.
#[derive(Debug, Clone)]
pub struct NewInvoice<'a> {
    /// The tenant's internal id.
    pub tenant_id: &'a str,
    /// The currency.
    pub currency: Currency,
    /// The lines with tax ([`crate::billing::invoice::with_tax`]).
    pub lines: &'a [Line],
    /// Their totals.
    pub totals: Totals,
    /// What paying it grants.
    pub purchase: &'a Purchase,
    /// The seller.
    pub seller: &'a Seller,
    /// The tenant's name.
    pub buyer_name: &'a str,
    /// The tenant's PAN.
    pub buyer_pan: Option<&'a str>,
}

/// The prefix of every invoice number.
pub const NUMBER_PREFIX: &str = "INV";

fn encode<T: Serialize>(value: &T) -> Result<String, InvoiceStoreError> {
    serde_json::to_string(value).map_err(|e| InvoiceStoreError::Corrupt {
        id: String::new(),
        what: e.to_string(),
    })
}

/// Writes a draft invoice and its lines; returns its id.
///
/// # Errors
/// Database failures.
pub async fn insert_draft(
    conn: &mut SqliteConnection,
    invoice: &NewInvoice<'_>,
    now: OffsetDateTime,
) -> Result<String, InvoiceStoreError> {
    let id = format!("inv_{}", hex::encode(rand::random::<[u8; 12]>()));
    sqlx::query(
        "INSERT INTO invoices (id, tenant_id, status, currency, subtotal, tax, total, purchase, \
         seller, buyer_name, buyer_pan, created_at) \
         VALUES (?, ?, 'draft', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(invoice.tenant_id)
    .bind(invoice.currency.as_str())
    .bind(invoice.totals.subtotal)
    .bind(invoice.totals.tax)
    .bind(invoice.totals.total)
    .bind(encode(invoice.purchase)?)
    .bind(encode(invoice.seller)?)
    .bind(invoice.buyer_name)
    .bind(invoice.buyer_pan)
    .bind(rfc3339(now))
    .execute(&mut *conn)
    .await?;
    for (position, line) in invoice.lines.iter().enumerate() {
        sqlx::query(
            "INSERT INTO invoice_lines (invoice_id, position, kind, description, module_slug, \
             plan, amount) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
        .bind(line.kind.as_str())
        .bind(&line.description)
        .bind(&line.module)
        .bind(&line.plan)
        .bind(line.amount)
        .execute(&mut *conn)
        .await?;
    }
    Ok(id)
}

/// Issues draft `id`: gives it the next number of `year` and opens it.
/// Run it inside a write transaction (`BEGIN IMMEDIATE`): the number is
/// taken and used in the same transaction, so a rollback gives it back and
/// numbers stay gap-free. Returns the number.
///
/// # Errors
/// [`InvoiceStoreError::WrongStatus`] unless the invoice is a draft;
/// database failures.
pub async fn issue(
    conn: &mut SqliteConnection,
    id: &str,
    year: FiscalYear,
    now: OffsetDateTime,
) -> Result<String, InvoiceStoreError> {
    let label = year.label();
    let sequence: i64 = sqlx::query_scalar(
        "INSERT INTO invoice_sequences (fiscal_year, last_number) VALUES (?, 1) \
         ON CONFLICT (fiscal_year) DO UPDATE SET last_number = last_number + 1 \
         RETURNING last_number",
    )
    .bind(&label)
    .fetch_one(&mut *conn)
    .await?;
    let number = format!("{NUMBER_PREFIX}-{label}-{sequence:06}");
    let done = sqlx::query(
        "UPDATE invoices SET status = 'open', fiscal_year = ?, sequence = ?, number = ?, \
         issued_at = ? WHERE id = ? AND status = 'draft'",
    )
    .bind(&label)
    .bind(sequence)
    .bind(&number)
    .bind(rfc3339(now))
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Err(wrong_status(conn, id, "draft").await);
    }
    Ok(number)
}

async fn wrong_status(
    conn: &mut SqliteConnection,
    id: &str,
    expected: &'static str,
) -> InvoiceStoreError {
    let status: Result<Option<String>, _> =
        sqlx::query_scalar("SELECT status FROM invoices WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await;
    match status {
        Ok(status) => InvoiceStoreError::WrongStatus {
            id: id.to_owned(),
            status: status.unwrap_or_else(|| "missing".into()),
            expected,
        },
        Err(e) => e.into(),
    }
}

/// Marks open invoice `id` paid by `provider` with its `reference`.
///
/// # Errors
/// [`InvoiceStoreError::WrongStatus`] unless open; database failures.
pub async fn mark_paid(
    conn: &mut SqliteConnection,
    id: &str,
    provider: &str,
    reference: &str,
    now: OffsetDateTime,
) -> Result<(), InvoiceStoreError> {
    let done = sqlx::query(
        "UPDATE invoices SET status = 'paid', provider = ?, provider_reference = ?, paid_at = ? \
         WHERE id = ? AND status = 'open'",
    )
    .bind(provider)
    .bind(reference)
    .bind(rfc3339(now))
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Err(wrong_status(conn, id, "open").await);
    }
    Ok(())
}

/// Voids invoice `id` (open or paid).
///
/// # Errors
/// [`InvoiceStoreError::WrongStatus`] for a draft or void invoice; database
/// failures.
pub async fn void(
    conn: &mut SqliteConnection,
    id: &str,
    now: OffsetDateTime,
) -> Result<(), InvoiceStoreError> {
    let done = sqlx::query(
        "UPDATE invoices SET status = 'void', voided_at = ? \
         WHERE id = ? AND status IN ('open', 'paid')",
    )
    .bind(rfc3339(now))
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Err(wrong_status(conn, id, "open or paid").await);
    }
    Ok(())
}

const COLUMNS: &str = "id, tenant_id, number, status, currency, subtotal, tax, total, purchase, \
    seller, buyer_name, buyer_pan, provider, provider_reference, created_at, issued_at, paid_at, \
    voided_at";

/// Invoice `id`, if it exists and belongs to `tenant_id` (any tenant when
/// `None`: the operator).
///
/// # Errors
/// Database failures; a row that does not parse.
pub async fn load(
    conn: &mut SqliteConnection,
    id: &str,
    tenant_id: Option<&str>,
) -> Result<Option<Invoice>, InvoiceStoreError> {
    let row: Option<SqliteRow> = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM invoices WHERE id = ? AND (?2 IS NULL OR tenant_id = ?2)"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => Ok(Some(parse(conn, row).await?)),
        None => Ok(None),
    }
}

/// The issued invoices (not drafts) of `tenant_id` (every tenant's when
/// `None`), newest first, at most `limit`.
///
/// # Errors
/// Database failures; a row that does not parse.
pub async fn list(
    conn: &mut SqliteConnection,
    tenant_id: Option<&str>,
    limit: u32,
) -> Result<Vec<Invoice>, InvoiceStoreError> {
    let rows: Vec<SqliteRow> = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM invoices WHERE status != 'draft' \
         AND (?1 IS NULL OR tenant_id = ?1) ORDER BY fiscal_year DESC, sequence DESC LIMIT ?2"
    ))
    .bind(tenant_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(parse(conn, row).await?);
    }
    Ok(out)
}

/// kind, description, module, plan, amount.
type LineRow = (String, String, Option<String>, Option<String>, i64);

async fn parse(conn: &mut SqliteConnection, row: SqliteRow) -> Result<Invoice, InvoiceStoreError> {
    let id: String = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    let currency: String = row.try_get("currency")?;
    let purchase: String = row.try_get("purchase")?;
    let seller: String = row.try_get("seller")?;
    let corrupt = |what: String| InvoiceStoreError::Corrupt {
        id: id.clone(),
        what,
    };
    let status =
        InvoiceStatus::parse(&status).ok_or_else(|| corrupt(format!("status {status}")))?;
    let currency = Currency::parse(&currency).map_err(corrupt)?;
    let purchase: Purchase =
        serde_json::from_str(&purchase).map_err(|e| corrupt(format!("purchase: {e}")))?;
    let seller: Seller =
        serde_json::from_str(&seller).map_err(|e| corrupt(format!("seller: {e}")))?;
    let rows: Vec<LineRow> = sqlx::query_as(
        "SELECT kind, description, module_slug, plan, amount FROM invoice_lines \
         WHERE invoice_id = ? ORDER BY position",
    )
    .bind(&id)
    .fetch_all(&mut *conn)
    .await?;
    let mut lines = Vec::with_capacity(rows.len());
    for (kind, description, module, plan, amount) in rows {
        let kind = LineKind::parse(&kind).ok_or_else(|| corrupt(format!("line kind {kind}")))?;
        lines.push(Line {
            kind,
            description,
            module,
            plan,
            amount,
        });
    }
    Ok(Invoice {
        id,
        tenant_id: row.try_get("tenant_id")?,
        number: row.try_get("number")?,
        status,
        currency,
        lines,
        totals: Totals {
            subtotal: row.try_get("subtotal")?,
            tax: row.try_get("tax")?,
            total: row.try_get("total")?,
        },
        purchase,
        seller,
        buyer_name: row.try_get("buyer_name")?,
        buyer_pan: row.try_get("buyer_pan")?,
        provider: row.try_get("provider")?,
        provider_reference: row.try_get("provider_reference")?,
        created_at: row.try_get("created_at")?,
        issued_at: row.try_get("issued_at")?,
        paid_at: row.try_get("paid_at")?,
        voided_at: row.try_get("voided_at")?,
    })
}
