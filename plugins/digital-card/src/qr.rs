//! QR codes drawn as SVG by the module itself (the `qrcode` crate computes
//! the matrix; this file draws it).

use qrcode::{Color, EcLevel, QrCode};

/// Modules of quiet zone around the code (the standard asks for 4).
const QUIET: usize = 4;

/// The QR code of `text` as an SVG document: one unit per module, the dark
/// modules as one path of unit squares, scaled to `size` pixels.
///
/// # Errors
///
/// When the text does not fit a QR code.
pub fn svg(text: &str, size: u32) -> Result<String, String> {
    Ok(document(&group(text)?, size))
}

/// The code as an SVG fragment in its own unit coordinates
/// (`0 0 n n` where `n` is [`Qr::extent`]), to place inside a card.
pub struct Qr {
    /// The `<path>` of the dark modules.
    pub path: String,
    /// Width and height in modules, quiet zone included.
    pub extent: usize,
}

/// The code of `text` as a [`Qr`].
///
/// # Errors
///
/// When the text does not fit a QR code.
pub fn group(text: &str) -> Result<Qr, String> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|error| format!("the text does not fit a QR code: {error}"))?;
    let width = code.width();
    let colors = code.to_colors();
    let mut d = String::with_capacity(width * width * 4);
    for (index, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let (x, y) = (index % width + QUIET, index / width + QUIET);
            d.push_str(&format!("M{x} {y}h1v1h-1z"));
        }
    }
    Ok(Qr {
        path: format!(r##"<path fill="#000" d="{d}"/>"##),
        extent: width + 2 * QUIET,
    })
}

fn document(qr: &Qr, size: u32) -> String {
    let n = qr.extent;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 {n} {n}" shape-rendering="crispEdges"><rect width="{n}" height="{n}" fill="#fff"/>{}</svg>"##,
        qr.path
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_has_the_finder_patterns_and_a_quiet_zone() {
        let qr = group("https://example.org/v/0123456789abcdef0123456789abcdef").unwrap();
        // Version 3 or 4 for this length: 29 or 33 modules plus 8 of quiet zone.
        assert!(qr.extent == 37 || qr.extent == 41, "{}", qr.extent);
        // The top-left finder's corner module is dark, the quiet zone is not.
        assert!(qr.path.contains("M4 4h1v1h-1z"));
        assert!(!qr.path.contains("M3 3h1"));
        let svg = svg("hello", 200).unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
