//! An invoice as a person files it: printable HTML and a PDF (pdf-writer,
//! with the Noto fonts embedded: [`super::pdf_text`]). Both show the same
//! rows: the seller with PAN, the number and dates, the buyer with PAN, the
//! lines, subtotal, tax, total, status and the payment's reference.
//!
//! Text from outside (the tenant's name, the seller's configuration, plan
//! names) is escaped for HTML; in the PDF it is set in Noto Sans (Latin,
//! Greek, Cyrillic, accents) or Noto Sans Devanagari (Nepali, shaped).
//! The same module renders the payment-link pages ([`pay_page`],
//! [`provider_form_page`]).

use pdf_writer::{Content, Pdf, Rect, Ref};

use super::pdf_text::{TextError, Typesetter};

use super::store::Invoice;
use crate::billing::money::{format_minor, minor_digits};

/// One printed row: a label and, for money, a right-hand amount.
struct Row {
    text: String,
    amount: Option<String>,
    bold: bool,
}

fn row(text: impl Into<String>) -> Row {
    Row {
        text: text.into(),
        amount: None,
        bold: false,
    }
}

/// The document's title: "Tax Invoice" when a tax line is present.
fn title(invoice: &Invoice) -> &'static str {
    if invoice.totals.tax != 0 {
        "Tax Invoice"
    } else {
        "Invoice"
    }
}

fn rows(invoice: &Invoice) -> (Vec<Row>, Vec<Row>, Vec<Row>) {
    let digits = minor_digits(invoice.currency);
    let money = |amount: i64| format!("{} {}", invoice.currency, format_minor(amount, digits));
    let mut head = vec![
        Row {
            text: if invoice.seller.name.is_empty() {
                "(seller not configured)".to_owned()
            } else {
                invoice.seller.name.clone()
            },
            amount: None,
            bold: true,
        },
        row(invoice.seller.address.clone()),
        row(format!("PAN/VAT: {}", invoice.seller.pan)),
        row(""),
        Row {
            text: format!(
                "{} {}",
                title(invoice),
                invoice.number.as_deref().unwrap_or("(draft)")
            ),
            amount: None,
            bold: true,
        },
        row(format!(
            "Issued: {}",
            invoice.issued_at.as_deref().unwrap_or("-")
        )),
        row(format!("Status: {}", invoice.status.as_str())),
        row(""),
        row(format!("Bill to: {}", invoice.buyer_name)),
    ];
    if let Some(pan) = &invoice.buyer_pan {
        head.push(row(format!("Buyer PAN: {pan}")));
    }
    let lines = invoice
        .lines
        .iter()
        .filter(|l| l.kind != crate::billing::invoice::LineKind::Tax)
        .map(|l| Row {
            text: l.description.clone(),
            amount: Some(money(l.amount)),
            bold: false,
        })
        .collect();
    let tax_label = invoice
        .lines
        .iter()
        .find(|l| l.kind == crate::billing::invoice::LineKind::Tax)
        .map_or_else(|| "Tax".to_owned(), |l| l.description.clone());
    let mut foot = vec![
        Row {
            text: "Subtotal".into(),
            amount: Some(money(invoice.totals.subtotal)),
            bold: false,
        },
        Row {
            text: tax_label,
            amount: Some(money(invoice.totals.tax)),
            bold: false,
        },
        Row {
            text: "Total".into(),
            amount: Some(money(invoice.totals.total)),
            bold: true,
        },
    ];
    if let Some(paid) = &invoice.paid_at {
        foot.push(row(""));
        foot.push(row(format!(
            "Paid {paid} via {}, reference {}",
            invoice.provider.as_deref().unwrap_or("-"),
            invoice.provider_reference.as_deref().unwrap_or("-")
        )));
    }
    (head, lines, foot)
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const PAGE_STYLE: &str = "<style>body{font-family:sans-serif;max-width:48em;margin:2em auto}\
     table{width:100%;border-collapse:collapse}td{padding:.3em;border-bottom:1px solid #ccc}\
     td.amount{text-align:right;white-space:nowrap}.bold{font-weight:bold}\
     form{display:inline-block;margin:1em 1em 0 0}button{font-size:1.1em;padding:.5em 1em}\
     .notice{padding:.8em;background:#eef;border:1px solid #99c}\
     @media print{body{margin:0}form{display:none}}</style>";

/// The invoice's rows as HTML (a fragment: the head rows and a table).
fn invoice_fragment(invoice: &Invoice) -> String {
    let (head, lines, foot) = rows(invoice);
    let mut out = String::new();
    for r in &head {
        let class = if r.bold { " class=\"bold\"" } else { "" };
        out.push_str(&format!("<div{class}>{}</div>\n", escape(&r.text)));
    }
    out.push_str("<table>\n");
    for r in lines.iter().chain(foot.iter()) {
        let class = if r.bold { " class=\"bold\"" } else { "" };
        out.push_str(&format!(
            "<tr{class}><td>{}</td><td class=\"amount\">{}</td></tr>\n",
            escape(&r.text),
            escape(r.amount.as_deref().unwrap_or(""))
        ));
    }
    out.push_str("</table>\n");
    out
}

fn page_head(title_text: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{}</title>{PAGE_STYLE}</head><body>\n",
        escape(title_text)
    )
}

/// The invoice as a standalone printable HTML page (no scripts, no
/// external resources).
pub fn html(invoice: &Invoice) -> String {
    let mut out = page_head(&format!(
        "{} {}",
        title(invoice),
        invoice.number.as_deref().unwrap_or("")
    ));
    out.push_str(&invoice_fragment(invoice));
    out.push_str("</body></html>\n");
    out
}

/// A provider a payment page offers: its name in forms' paths and its
/// label on the button.
#[derive(Debug, Clone, Copy)]
pub struct PayButton<'a> {
    /// The provider's stable name (`esewa`, `khalti`, `stripe`).
    pub provider: &'a str,
    /// What the button says.
    pub label: &'a str,
}

/// The payment page of a payment link: the invoice, then one button per
/// provider (each a form POSTing to `/pay/{token}/{provider}`) while it is
/// open, or a line saying it is paid or void. No scripts, nothing
/// external.
pub fn pay_page(invoice: &Invoice, token: &str, buttons: &[PayButton<'_>]) -> String {
    let number = invoice.number.as_deref().unwrap_or("");
    let mut out = page_head(&format!("Pay invoice {number}"));
    let notice = match invoice.status {
        super::store::InvoiceStatus::Paid => Some(format!(
            "This invoice is paid{}. Nothing more is due.",
            invoice
                .paid_at
                .as_deref()
                .map(|at| format!(" ({at})"))
                .unwrap_or_default()
        )),
        super::store::InvoiceStatus::Void => {
            Some("This invoice is void. Nothing is due on it.".to_owned())
        }
        _ if buttons.is_empty() => {
            Some("No payment method is available here; ask Souk's operator.".to_owned())
        }
        _ => None,
    };
    if let Some(notice) = notice {
        out.push_str(&format!("<p class=\"notice\">{}</p>\n", escape(&notice)));
    }
    out.push_str(&invoice_fragment(invoice));
    if invoice.status == super::store::InvoiceStatus::Open {
        for button in buttons {
            out.push_str(&format!(
                "<form method=\"post\" action=\"/pay/{}/{}\"><button type=\"submit\">{}</button></form>\n",
                escape(token),
                escape(button.provider),
                escape(button.label)
            ));
        }
    }
    out.push_str("</body></html>\n");
    out
}

/// The page that hands the browser on to a provider taking a signed form
/// (eSewa): the form's fields, hidden, and one button that posts them to
/// `action`. No scripts (the page's CSP allows none): the person presses
/// the button.
pub fn provider_form_page(
    invoice: &Invoice,
    provider_label: &str,
    action: &str,
    fields: &[(String, String)],
) -> String {
    let number = invoice.number.as_deref().unwrap_or("");
    let mut out = page_head(&format!("Pay invoice {number}"));
    out.push_str(&format!(
        "<p>Invoice {} for {} {}: continue to {} to pay it.</p>\n",
        escape(number),
        invoice.currency,
        escape(&format_minor(
            invoice.totals.total,
            minor_digits(invoice.currency)
        )),
        escape(provider_label)
    ));
    out.push_str(&format!(
        "<form method=\"post\" action=\"{}\">\n",
        escape(action)
    ));
    for (name, value) in fields {
        out.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
            escape(name),
            escape(value)
        ));
    }
    out.push_str(&format!(
        "<button type=\"submit\">Continue to {}</button>\n</form>\n</body></html>\n",
        escape(provider_label)
    ));
    out
}

const PAGE_WIDTH: f32 = 595.0;
const PAGE_HEIGHT: f32 = 842.0;
const MARGIN: f32 = 56.0;
const LEADING: f32 = 16.0;
const SIZE: f32 = 11.0;

/// The invoice as a PDF (A4, one or more pages), its text in the embedded
/// Noto fonts (Latin with accents, and Devanagari shaped), subsetted, with
/// ToUnicode maps so it extracts ([`super::pdf_text`]).
///
/// # Errors
/// [`TextError`] only for a broken build (an embedded font that does not
/// parse or subset).
pub fn pdf(invoice: &Invoice) -> Result<Vec<u8>, TextError> {
    let (head, lines, foot) = rows(invoice);
    let mut set = Typesetter::new()?;
    let mut pages: Vec<Content> = Vec::new();
    let mut content = Content::new();
    let mut y = PAGE_HEIGHT - MARGIN;
    for r in head.iter().chain(lines.iter()).chain(foot.iter()) {
        if y < MARGIN {
            pages.push(std::mem::replace(&mut content, Content::new()));
            y = PAGE_HEIGHT - MARGIN;
        }
        if !r.text.is_empty() {
            let shaped = set.shape(&r.text, r.bold);
            set.show(&mut content, &shaped, MARGIN, y, SIZE);
        }
        if let Some(amount) = &r.amount {
            let shaped = set.shape(amount, r.bold);
            let x = PAGE_WIDTH - MARGIN - shaped.width(SIZE);
            set.show(&mut content, &shaped, x, y, SIZE);
        }
        y -= LEADING;
    }
    pages.push(content);

    let mut last = 0;
    let mut alloc = || {
        last += 1;
        Ref::new(last)
    };
    let mut pdf = Pdf::new();
    let catalog = alloc();
    let tree = alloc();
    let page_refs: Vec<(Ref, Ref)> = pages.iter().map(|_| (alloc(), alloc())).collect();
    let fonts = set.font_refs(&mut alloc);
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_refs.iter().map(|(page, _)| *page))
        .count(i32::try_from(pages.len()).unwrap_or(1));
    for ((page_ref, content_ref), content) in page_refs.iter().zip(pages) {
        let mut page = pdf.page(*page_ref);
        page.media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT));
        page.parent(tree);
        page.contents(*content_ref);
        let mut resources = page.resources();
        let mut names = resources.fonts();
        for (name, font) in &fonts {
            names.pair(*name, *font);
        }
        drop(names);
        drop(resources);
        drop(page);
        pdf.stream(*content_ref, &content.finish());
    }
    set.write_fonts(&mut pdf, &fonts, &mut alloc)?;
    Ok(pdf.finish())
}
