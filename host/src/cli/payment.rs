//! `souk payment`: invoices and bank transfers from the CLI (the twins of
//! `GET /v1/invoices`, `GET /v1/tenants/{t}/invoices`,
//! `POST /v1/tenants/{t}/invoices/{id}/mark-paid` and
//! `POST /v1/tenants/{t}/invoices/{id}/void`).

use clap::Subcommand;
use serde_json::json;

use super::{GlobalOptions, open, print};
use crate::billing::money::{format_minor, minor_digits};

#[derive(Debug, Subcommand)]
pub(super) enum PaymentCommand {
    /// List issued invoices (a tenant's, or every tenant's).
    Invoices {
        /// Tenant slug; all tenants when absent.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Record that an open invoice was paid by bank transfer (audited).
    MarkPaid {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// The invoice's id (`inv_...`).
        #[arg(long)]
        invoice: String,
        /// The bank transfer's reference.
        #[arg(long)]
        reference: String,
    },
    /// Void an open invoice (audited): its payment attempts are canceled,
    /// and a payment arriving for it later is flagged, never granted. A
    /// paid invoice is refunded instead.
    Void {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// The invoice's id (`inv_...`).
        #[arg(long)]
        invoice: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
}

pub(super) async fn run(command: PaymentCommand, global: &GlobalOptions) -> anyhow::Result<()> {
    let souk = open(global).await?;
    let json = global.json;
    match command {
        PaymentCommand::Invoices { tenant } => {
            let tenant = match tenant {
                Some(slug) => Some(souk.tenancy.by_slug(&slug).await?),
                None => None,
            };
            let list = souk.payments().invoices(tenant.as_ref(), 500).await?;
            let rows: Vec<serde_json::Value> = list
                .iter()
                .map(|i| {
                    json!({
                        "id": i.id,
                        "number": i.number,
                        "status": i.status.as_str(),
                        "buyer": i.buyer_name,
                        "total": format_minor(i.totals.total, minor_digits(i.currency)),
                        "currency": i.currency.as_str(),
                    })
                })
                .collect();
            print(json, &rows, |rows| {
                rows.iter()
                    .map(|r| {
                        format!(
                            "{}\t{}\t{}\t{} {}\t{}",
                            r["number"].as_str().unwrap_or(""),
                            r["status"].as_str().unwrap_or(""),
                            r["buyer"].as_str().unwrap_or(""),
                            r["total"].as_str().unwrap_or(""),
                            r["currency"].as_str().unwrap_or(""),
                            r["id"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        PaymentCommand::MarkPaid {
            tenant,
            invoice,
            reference,
        } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let recorded = souk
                .payments()
                .mark_paid_by_transfer(&tenant, &invoice, &reference)
                .await?;
            let answer = json!({
                "outcome": recorded.outcome.as_str(),
                "reason": recorded.reason,
                "repeated": recorded.repeated,
            });
            print(json, &answer, |a| {
                format!(
                    "invoice {invoice}: {}{}",
                    a["outcome"].as_str().unwrap_or(""),
                    a["reason"]
                        .as_str()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                )
            })
        }
        PaymentCommand::Void {
            tenant,
            invoice,
            reason,
        } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let voided = souk
                .payments()
                .void_invoice(&tenant, &invoice, &reason)
                .await?;
            let answer = json!({
                "id": voided.id,
                "number": voided.number,
                "status": voided.status.as_str(),
            });
            print(json, &answer, |a| {
                format!(
                    "invoice {} ({}): {}",
                    a["number"].as_str().unwrap_or(""),
                    a["id"].as_str().unwrap_or(""),
                    a["status"].as_str().unwrap_or("")
                )
            })
        }
    }
}
