//! A minimal PDF reader for tests (the invoice PDF's unit tests, and the
//! end-to-end tests, which include this file by path): it checks the
//! file's structure and extracts the text of every text object as a PDF
//! reader does, through each font's `/ToUnicode` CMap and `/ActualText`
//! spans. It reads what `payments::document::pdf` writes (uncompressed
//! content streams and CMaps), not every PDF.

use std::collections::HashMap;

/// The body of object `id` (between `id 0 obj` and `endobj`).
fn object(text: &str, offsets: &HashMap<usize, usize>, id: usize) -> Result<String, String> {
    let at = *offsets.get(&id).ok_or(format!("no object {id}"))?;
    let body = &text[at..];
    let end = body
        .find("endobj")
        .ok_or(format!("object {id} has no end"))?;
    Ok(body[..end].to_owned())
}

/// The data of a stream object's body.
fn stream_data(body: &str) -> Result<&str, String> {
    let start = body.find("stream\n").ok_or("not a stream")? + 7;
    let end = body.rfind("endstream").ok_or("stream without end")?;
    Ok(body[start..end].trim_end_matches('\n'))
}

/// The object number after `key` in `dict` (`/Key 12 0 R`).
fn reference(dict: &str, key: &str) -> Option<usize> {
    let rest = &dict[dict.find(key)? + key.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

fn utf16_hex(hex: &str) -> Result<String, String> {
    let bytes = hex::decode(hex.trim()).map_err(|e| format!("hex {hex}: {e}"))?;
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
        .collect();
    String::from_utf16(&units).map_err(|e| e.to_string())
}

/// A ToUnicode CMap's `bfchar` entries: CID → text.
fn to_unicode(cmap: &str) -> Result<HashMap<u16, String>, String> {
    let mut map = HashMap::new();
    let mut rest = cmap;
    while let Some(start) = rest.find("beginbfchar") {
        let block = &rest[start + 11..];
        let end = block.find("endbfchar").ok_or("bfchar without end")?;
        for line in block[..end].lines().filter(|l| !l.trim().is_empty()) {
            let parts: Vec<&str> = line
                .split(['<', '>'])
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            let [cid, text] = parts.as_slice() else {
                return Err(format!("bad bfchar line {line}"));
            };
            let cid = u16::from_str_radix(cid, 16).map_err(|e| e.to_string())?;
            map.insert(cid, utf16_hex(text)?);
        }
        rest = &block[end..];
    }
    Ok(map)
}

/// A PDF string token's bytes: `(literal)` (with its escapes) or
/// `<hex>`.
fn string_bytes(token: &str) -> Result<Vec<u8>, String> {
    if let Some(hex) = token.strip_prefix('<') {
        return hex::decode(hex.trim_end_matches('>')).map_err(|e| e.to_string());
    }
    let inner = token
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or(format!("not a string: {token}"))?;
    let bytes = inner.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        i += 1;
        let c = *bytes.get(i).ok_or("escape at the end")?;
        match c {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'0'..=b'7' => {
                let mut value = 0u32;
                let mut n = 0;
                while n < 3 && i < bytes.len() && (b'0'..=b'7').contains(&bytes[i]) {
                    value = value * 8 + u32::from(bytes[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push(u8::try_from(value & 0xFF).unwrap_or(0));
                continue;
            }
            other => out.push(other),
        }
        i += 1;
    }
    Ok(out)
}

/// A minimal PDF reader for the tests: checks the header, the trailer,
/// that `startxref` points at the cross-reference table and that every
/// offset in it points at its object; then answers the text of every
/// text object (`BT` .. `ET`) of every page, in order, as a PDF reader
/// extracts it: each glyph through its font's `/ToUnicode` CMap, except
/// inside a marked-content span with `/ActualText`, which stands for
/// its glyphs.
pub fn pdf_text(bytes: &[u8]) -> Result<Vec<String>, String> {
    // One char per byte, so offsets stay byte offsets.
    let text: String = bytes
        .iter()
        .map(|&b| if b.is_ascii() { b as char } else { '?' })
        .collect();
    if !text.starts_with("%PDF-") || !text.trim_end().ends_with("%%EOF") {
        return Err("no PDF header or trailer".into());
    }
    let start = text.rfind("startxref").ok_or("no startxref")?;
    let offset: usize = text[start + 9..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or("startxref is not a number")?;
    let xref = text.get(offset..).ok_or("startxref out of range")?;
    if !xref.starts_with("xref") {
        return Err("startxref does not point at xref".into());
    }
    let mut lines = xref.lines().skip(1);
    let header = lines.next().ok_or("empty xref")?;
    let count: usize = header
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .ok_or("bad xref header")?;
    let mut offsets = HashMap::new();
    for (id, entry) in lines.take(count).enumerate() {
        let mut parts = entry.split_whitespace();
        let at: usize = parts
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or("bad entry")?;
        if parts.nth(1) == Some("n") {
            if !text
                .get(at..)
                .unwrap_or("")
                .starts_with(&format!("{id} 0 obj"))
            {
                return Err(format!("object {id} is not at {at}"));
            }
            offsets.insert(id, at);
        }
    }
    let root = reference(&text[offset..], "/Root").ok_or("no /Root")?;
    let tree = reference(&object(&text, &offsets, root)?, "/Pages").ok_or("no /Pages")?;
    let tree = object(&text, &offsets, tree)?;
    let kids = &tree[tree.find("/Kids").ok_or("no /Kids")?..];
    let kids: Vec<usize> = kids
        [kids.find('[').ok_or("bad /Kids")? + 1..kids.find(']').ok_or("bad /Kids")?]
        .split(" R")
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect();
    let mut shown = Vec::new();
    for kid in kids {
        let page = object(&text, &offsets, kid)?;
        // The page's fonts: resource name → CID → text.
        let mut fonts: HashMap<String, HashMap<u16, String>> = HashMap::new();
        let font_dict = &page[page.find("/Font").ok_or("page without fonts")?..];
        let font_dict = &font_dict[..font_dict.find(">>").ok_or("bad /Font")?];
        for entry in font_dict.split('/').skip(2) {
            let mut parts = entry.split_whitespace();
            let name = parts.next().ok_or("bad font entry")?.to_owned();
            let id: usize = parts
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or("bad font ref")?;
            let font = object(&text, &offsets, id)?;
            let cmap = reference(&font, "/ToUnicode").ok_or("a font without /ToUnicode")?;
            let cmap = object(&text, &offsets, cmap)?;
            fonts.insert(name, to_unicode(stream_data(&cmap)?)?);
        }
        let contents = reference(&page, "/Contents").ok_or("no /Contents")?;
        let contents = object(&text, &offsets, contents)?;
        let ops = stream_data(&contents)?;
        let mut current: Option<&HashMap<u16, String>> = None;
        let mut line = String::new();
        let mut actual: Option<String> = None;
        let mut operands: Vec<String> = Vec::new();
        for token in tokenize(ops) {
            match token.as_str() {
                "BT" => line.clear(),
                "ET" => shown.push(std::mem::take(&mut line)),
                "Tf" => {
                    let name = operands.first().ok_or("Tf without a font")?;
                    current = Some(
                        fonts
                            .get(name.trim_start_matches('/'))
                            .ok_or(format!("unknown font {name}"))?,
                    );
                }
                "BDC" => {
                    let props = operands.last().cloned().unwrap_or_default();
                    if let Some(at) = props.find("/ActualText") {
                        let value = props[at + 11..].trim();
                        let end = value.find(['>', ')']).ok_or("bad ActualText")? + 1;
                        let bytes = string_bytes(&value[..end])?;
                        let value = if bytes.starts_with(&[0xFE, 0xFF]) {
                            utf16_hex(&hex::encode(&bytes[2..]))?
                        } else {
                            String::from_utf8(bytes).map_err(|e| e.to_string())?
                        };
                        line.push_str(&value);
                        actual = Some(value);
                    }
                }
                "EMC" => actual = None,
                "Tj" | "TJ" => {
                    let map = current.ok_or("text before Tf")?;
                    for string in operands.iter().filter(|o| o.starts_with(['<', '('])) {
                        let bytes = string_bytes(string)?;
                        for cid in bytes.chunks(2) {
                            let cid = u16::from_be_bytes([cid[0], *cid.get(1).unwrap_or(&0)]);
                            if actual.is_none() {
                                line.push_str(
                                    map.get(&cid).ok_or(format!("CID {cid} has no text"))?,
                                );
                            }
                        }
                    }
                }
                // An operand (a number, name, string or dictionary).
                _ if !token.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                    operands.push(token);
                    continue;
                }
                // Any other operator: its operands are spent.
                _ => {}
            }
            operands.clear();
        }
    }
    Ok(shown)
}

/// Content-stream tokens: operators, numbers, names, strings, arrays'
/// elements, and a `<< .. >>` dictionary as one token.
fn tokenize(ops: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = ops.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() || c == '[' || c == ']' {
            i += 1;
        } else if c == '<' && chars.get(i + 1) == Some(&'<') {
            let start = i;
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '<' && chars.get(i + 1) == Some(&'<') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '<' {
                    // A hex string inside the dictionary.
                    while i < chars.len() && chars[i] != '>' {
                        i += 1;
                    }
                    i += 1;
                } else if chars[i] == '(' {
                    // A literal string inside the dictionary.
                    while i < chars.len() && chars[i] != ')' {
                        i += if chars[i] == '\\' { 2 } else { 1 };
                    }
                    i += 1;
                } else if chars[i] == '>' && chars.get(i + 1) == Some(&'>') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(chars[start..i].iter().collect());
        } else if c == '<' {
            let start = i;
            while i < chars.len() && chars[i] != '>' {
                i += 1;
            }
            i += 1;
            out.push(chars[start..i.min(chars.len())].iter().collect());
        } else if c == '(' {
            // Literal strings nest balanced parentheses; `\` escapes.
            let start = i;
            let mut depth = 0;
            while i < chars.len() {
                match chars[i] {
                    '\\' => i += 1,
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            i += 1;
            out.push(chars[start..i.min(chars.len())].iter().collect());
        } else {
            let start = i;
            while i < chars.len()
                && !chars[i].is_whitespace()
                && !matches!(chars[i], '[' | ']' | '<' | '(')
            {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        }
    }
    out
}
