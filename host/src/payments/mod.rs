//! Payments and invoices (issue 14): tenants buy plans and bundles, an
//! invoice is issued for each purchase, and a confirmed payment becomes a
//! subscription change exactly once.
//!
//! - [`fiscal`]: the fiscal year an invoice is numbered in;
//! - [`store`]: invoices in the control plane, numbered without gaps;
//! - [`inbox`]: payment attempts and the one inbox every provider event and
//!   confirmation goes through;
//! - [`apply`]: a provider event or confirmation recorded in the inbox and
//!   applied, exactly once, in one transaction;
//! - [`renewals`], [`pay_link`]: renewal invoices for wallet payers,
//!   emailed with a signed link to a page that pays them;
//! - [`service`]: [`service::Payments`], which prices a purchase through
//!   billing, issues its invoice, and applies confirmed payments through
//!   the subscription state machine;
//! - [`stripe_subscriptions`]: subscriptions Stripe renews, driven by its
//!   events, and canceled at Stripe first;
//! - [`refund`], [`void`]: the operator ends what a refunded invoice paid
//!   for, and voids an open invoice.
//!
//! Amounts, tax and an invoice's lines are billing's domain
//! ([`crate::billing::money`], [`crate::billing::invoice`]); this module
//! builds on billing and billing never imports it.

pub mod apply;
pub mod checkout;
pub mod document;
pub mod fiscal;
pub mod inbox;
pub mod manual;
pub mod pay_link;
pub mod pay_token;
#[cfg(test)]
pub(crate) mod pdf_extract;
pub mod pdf_text;
pub mod providers;
pub mod refund;
pub mod renewals;
pub mod service;
pub mod store;
pub mod stripe_links;
pub mod stripe_subscriptions;
pub mod void;

#[cfg(test)]
pub(crate) mod tests;
