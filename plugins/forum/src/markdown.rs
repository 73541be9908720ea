//! Markdown to HTML that is safe to put in a page: pulldown-cmark renders
//! (raw HTML in the source passes through it), then ammonia keeps only an
//! allow-list of tags and attributes — no `<script>`, no event handler
//! attributes, no `javascript:` or `data:` URLs, `rel="nofollow noopener
//! noreferrer"` on every link.

use pulldown_cmark::{Options, Parser, html};

/// The longest post body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 20_000;

/// Renders `markdown` to sanitised HTML.
pub fn render(markdown: &str) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    let mut unsafe_html = String::with_capacity(markdown.len() * 2);
    html::push_html(&mut unsafe_html, Parser::new_ext(markdown, options));
    ammonia::Builder::default()
        .link_rel(Some("nofollow noopener noreferrer"))
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .clean(&unsafe_html)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn markdown_renders_to_html() {
        let html = render("**bold** and [a link](https://example.org)\n\n> quoted");
        assert!(html.contains("<strong>bold</strong>"), "{html}");
        assert!(html.contains("href=\"https://example.org\""), "{html}");
        assert!(
            html.contains("rel=\"nofollow noopener noreferrer\""),
            "{html}"
        );
        assert!(html.contains("<blockquote>"), "{html}");
    }

    #[test]
    fn no_script_survives() {
        let payloads = [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "[click](javascript:alert(1))",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<svg onload=alert(1)>",
            "<iframe src=\"https://evil.example\"></iframe>",
            "<scr<script>ipt>alert(1)</script>",
            "<a href=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">x</a>",
            "<div style=\"background:url(javascript:alert(1))\">x</div>",
            "![x](javascript:alert(1))",
        ];
        for payload in payloads {
            let html = render(payload).to_ascii_lowercase();
            for bad in [
                "<script",
                "onerror",
                "onload",
                "javascript:",
                "<iframe",
                "data:",
                "style=",
            ] {
                assert!(!html.contains(bad), "{payload} -> {html}");
            }
        }
    }
}
