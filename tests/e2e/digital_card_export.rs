//! Digital Card's rendering through the real binary: one card as PNG and
//! PDF (`card_export`, pro), drawn in the module with the fonts it embeds
//! (a Nepali name's glyphs are drawn, and the PDF embeds a Devanagari
//! font that covers it), the print export with the same faces, the
//! tenant's branding on PDFs and the public verification page, and the
//! "Verified with Souk" mark that only `white_label` (business) removes.

use std::collections::BTreeSet;

use lopdf::{Document, Object};
use serde_json::{Value, json};

use crate::digital_card::{CARDS, card, issue, setup, stranger_get, wait_for_job};
use crate::membership::start;
use crate::support::{Answer, Host};

fn grant(host: &Host, module: &str, plan: &str) {
    let a = host.post(
        &format!("/v1/tenants/acme/subscriptions/{module}/grant"),
        &host.operator,
        json!({"plan": plan}),
    );
    assert_eq!(a.status, 200, "{a:?}");
}

fn add_member(host: &Host, token: &str, number: &str, name: &str) {
    let a = host.post(
        "/t/acme/m/membership/members",
        token,
        json!({"number": number, "name": name}),
    );
    assert_eq!(a.status, 201, "{a:?}");
}

fn rename_member(host: &Host, token: &str, number: &str, name: &str) {
    let a = host.request(
        "PATCH",
        &format!("/t/acme/m/membership/members/{number}"),
        Some(token),
        Some(json!({"name": name}).to_string().into_bytes()),
    );
    assert_eq!(a.status, 200, "{a:?}");
}

/// A decoded PNG: width, height and RGBA pixels.
struct Picture {
    width: u32,
    height: u32,
    rgba: Vec<u8>,
}

impl Picture {
    fn pixel(&self, x: u32, y: u32) -> [u8; 4] {
        let at = ((y * self.width + x) * 4) as usize;
        [
            self.rgba[at],
            self.rgba[at + 1],
            self.rgba[at + 2],
            self.rgba[at + 3],
        ]
    }
}

/// Decodes a PNG answer (and checks it is one) with the `png` crate.
fn decode_png(answer: &Answer) -> Picture {
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.content_type, "image/png");
    let mut decoder = png::Decoder::new(answer.bytes.as_slice());
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut buffer = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buffer).expect("PNG pixels");
    assert_eq!(
        frame.color_type,
        png::ColorType::Rgba,
        "tiny-skia writes RGBA"
    );
    buffer.truncate(frame.buffer_size());
    Picture {
        width: frame.width,
        height: frame.height,
        rgba: buffer,
    }
}

fn png_of(host: &Host, token: &str, number: &str) -> Picture {
    decode_png(&host.get(&format!("{CARDS}/cards/{number}/card.png"), token))
}

fn pdf_of(host: &Host, token: &str, number: &str) -> Document {
    let a = host.get(&format!("{CARDS}/cards/{number}/card.pdf"), token);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.content_type, "application/pdf");
    Document::load_mem(&a.bytes).expect("a PDF lopdf reads")
}

/// An embedded font of a PDF: its name and the text its ToUnicode map
/// gives its glyphs.
struct EmbeddedFont {
    base_font: String,
    program_bytes: usize,
    unicode: String,
}

fn name_of(object: &Object) -> String {
    object
        .as_name()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_default()
}

/// Every Type0 font with an embedded TrueType program (`FontFile2`),
/// wherever it is used (pages, form XObjects).
fn embedded_fonts(doc: &Document) -> Vec<EmbeddedFont> {
    let mut fonts = Vec::new();
    for object in doc.objects.values() {
        let Ok(dict) = object.as_dict() else { continue };
        if dict.get(b"Subtype").ok().map(name_of).as_deref() != Some("Type0") {
            continue;
        }
        let base_font = dict.get(b"BaseFont").ok().map(name_of).unwrap_or_default();
        let descendant = dict
            .get(b"DescendantFonts")
            .and_then(Object::as_array)
            .ok()
            .and_then(|fonts| fonts.first())
            .and_then(|font| doc.dereference(font).ok())
            .and_then(|(_, font)| font.as_dict().ok().cloned())
            .expect("a descendant font");
        let descriptor = descendant
            .get(b"FontDescriptor")
            .ok()
            .and_then(|d| doc.dereference(d).ok())
            .and_then(|(_, d)| d.as_dict().ok().cloned())
            .expect("a font descriptor");
        let program_bytes = descriptor
            .get(b"FontFile2")
            .ok()
            .and_then(|f| doc.dereference(f).ok())
            .and_then(|(_, f)| f.as_stream().ok().cloned())
            .map(|stream| {
                stream
                    .decompressed_content()
                    .unwrap_or(stream.content)
                    .len()
            })
            .unwrap_or(0);
        let unicode = dict
            .get(b"ToUnicode")
            .ok()
            .and_then(|t| doc.dereference(t).ok())
            .and_then(|(_, t)| t.as_stream().ok().cloned())
            .map(|stream| {
                let cmap = stream.decompressed_content().unwrap_or(stream.content);
                cmap_text(&String::from_utf8_lossy(&cmap))
            })
            .unwrap_or_default();
        fonts.push(EmbeddedFont {
            base_font,
            program_bytes,
            unicode,
        });
    }
    fonts
}

/// The characters a ToUnicode CMap maps glyphs to: the UTF-16 hex
/// strings of its `bfchar` targets.
fn cmap_text(cmap: &str) -> String {
    let mut text = String::new();
    for section in cmap.split("beginbfchar").skip(1) {
        let section = section.split("endbfchar").next().unwrap_or("");
        for line in section.lines() {
            let hex: Vec<&str> = line
                .split(['<', '>'])
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .collect();
            let Some(target) = hex.get(1) else { continue };
            let units: Vec<u16> = (0..target.len() / 4)
                .filter_map(|i| u16::from_str_radix(&target[i * 4..i * 4 + 4], 16).ok())
                .collect();
            text.push_str(&String::from_utf16_lossy(&units));
        }
    }
    text
}

/// The image XObjects of a PDF (photos and logos).
fn images(doc: &Document) -> usize {
    doc.objects
        .values()
        .filter_map(|object| object.as_stream().ok())
        .filter(|stream| stream.dict.get(b"Subtype").ok().map(name_of).as_deref() == Some("Image"))
        // A soft mask (an image's transparency) is an image too; count
        // the pictures only.
        .filter(|stream| {
            stream.dict.get(b"ColorSpace").ok().map(name_of).as_deref() != Some("DeviceGray")
        })
        .count()
}

/// The card's template as `GET /templates` lists it.
fn template_of(host: &Host, token: &str, card: &Value) -> Value {
    let templates = host.get(&format!("{CARDS}/templates"), token);
    templates.body["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .find(|t| t["slug"] == card["template"])
        .cloned()
        .expect("the card's template is listed")
}

/// A real PNG of one colour, as a tenant would upload a logo.
fn solid_png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("header");
        let pixels: Vec<u8> = (0..width * height).flat_map(|_| rgb).collect();
        writer.write_image_data(&pixels).expect("pixels");
    }
    bytes
}

#[test]
fn a_card_as_png_and_pdf_is_pro_and_has_the_templates_size() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    let a = issue(&host, &token, json!({"member": "M-1"}));
    assert_eq!(a.status, 201, "{a:?}");
    // Free: both routes are the host's 402 naming the pro plan.
    for format in ["png", "pdf"] {
        let a = host.get(&format!("{CARDS}/cards/C-000001/card.{format}"), &token);
        assert_eq!(a.status, 402, "{a:?}");
        assert_eq!(
            (a.body["feature"].as_str(), a.body["upgrade_plan"].as_str()),
            (Some("card_export"), Some("pro")),
            "{a:?}"
        );
    }
    grant(&host, "digital-card", "pro");
    let issued = card(&host, &token, "C-000001");
    let template = template_of(&host, &token, &issued);
    let picture = png_of(&host, &token, "C-000001");
    assert_eq!(
        (u64::from(picture.width), u64::from(picture.height)),
        (
            template["width"].as_u64().unwrap(),
            template["height"].as_u64().unwrap()
        )
    );
    // Something is drawn: more than one colour.
    let colours: BTreeSet<[u8; 4]> = picture
        .rgba
        .chunks(4)
        .map(|p| [p[0], p[1], p[2], p[3]])
        .collect();
    assert!(colours.len() > 10, "{} colours", colours.len());

    let doc = pdf_of(&host, &token, "C-000001");
    let pages = doc.get_pages();
    assert_eq!(pages.len(), 1);
    let page = doc.get_dictionary(pages[&1]).unwrap();
    let media: Vec<f32> = page
        .get(b"MediaBox")
        .and_then(Object::as_array)
        .unwrap()
        .iter()
        .map(|n| n.as_float().unwrap())
        .collect();
    // ID-1: 85.6 x 54 mm in points.
    assert!(
        (media[2] - 242.65).abs() < 0.1 && (media[3] - 153.07).abs() < 0.1,
        "{media:?}"
    );
    let fonts = embedded_fonts(&doc);
    assert!(!fonts.is_empty(), "the PDF embeds its font");
    assert!(
        fonts
            .iter()
            .any(|f| f.base_font.contains("NotoSans") && f.program_bytes > 1000),
        "Noto Sans is embedded"
    );
    let text: String = fonts.iter().map(|f| f.unicode.as_str()).collect();
    for letter in "Kathmandu RunnersAsha Gurung".chars().filter(|c| *c != ' ') {
        assert!(
            text.contains(letter),
            "{letter} is in an embedded font: {text}"
        );
    }

    // An unknown card is a 404 problem, not a picture.
    let a = host.get(&format!("{CARDS}/cards/C-999/card.png"), &token);
    assert_eq!(a.status, 404, "{a:?}");
    let a = host.get(&format!("{CARDS}/cards/C-999/card.pdf"), &token);
    assert_eq!(a.status, 404, "{a:?}");
}

#[test]
fn a_nepali_name_is_drawn_from_the_embedded_font_on_png_and_pdf() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    grant(&host, "digital-card", "pro");
    // Nine characters each, so missing glyphs would draw the same row of
    // boxes for both names.
    let (asha, bikash) = ("आशा गुरुङ", "बिकास राई");
    assert_eq!(asha.chars().count(), bikash.chars().count());
    add_member(&host, &token, "M-3", asha);
    let a = issue(&host, &token, json!({"member": "M-3"}));
    assert_eq!(a.status, 201, "{a:?}");
    let number = a.body["number"].as_str().unwrap().to_owned();

    let nepali = png_of(&host, &token, &number);
    rename_member(&host, &token, "M-3", bikash);
    let other = png_of(&host, &token, &number);
    rename_member(&host, &token, "M-3", &"?".repeat(asha.chars().count()));
    let question_marks = png_of(&host, &token, &number);
    assert!(
        nepali.rgba != other.rgba,
        "two Nepali names draw differently"
    );
    assert!(
        nepali.rgba != question_marks.rgba,
        "the name is not drawn as `?`"
    );

    rename_member(&host, &token, "M-3", asha);
    let doc = pdf_of(&host, &token, &number);
    let fonts = embedded_fonts(&doc);
    let devanagari: Vec<&EmbeddedFont> = fonts
        .iter()
        .filter(|f| f.base_font.contains("NotoSansDevanagari"))
        .collect();
    assert!(
        !devanagari.is_empty(),
        "a Devanagari font is embedded: {:?}",
        fonts.iter().map(|f| &f.base_font).collect::<Vec<_>>()
    );
    assert!(devanagari.iter().all(|f| f.program_bytes > 1000));
    let covered: String = devanagari.iter().map(|f| f.unicode.as_str()).collect();
    for letter in asha.chars().filter(|c| *c != ' ') {
        assert!(
            covered.contains(letter),
            "{letter} is drawn from the Devanagari font: {covered}"
        );
    }
}

#[test]
fn the_print_export_draws_full_faces_with_embedded_fonts() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    grant(&host, "membership", "plus");
    grant(&host, "digital-card", "pro");
    add_member(&host, &token, "M-3", "आशा गुरुङ");
    for member in ["M-1", "M-2", "M-3"] {
        let a = issue(&host, &token, json!({"member": member}));
        assert_eq!(a.status, 201, "{a:?}");
    }
    let a = host.post(&format!("{CARDS}/exports"), &token, json!({}));
    assert_eq!(a.status, 202, "{a:?}");
    let job = wait_for_job(&host, &token, a.body["job"].as_str().unwrap());
    let url = job["result_url"].as_str().expect("a signed URL").to_owned();
    let res = host
        .client
        .get(format!("{}{url}", host.base))
        .send()
        .expect("download");
    assert_eq!(res.status().as_u16(), 200);
    let doc = Document::load_mem(&res.bytes().unwrap()).expect("a PDF lopdf reads");
    let pages = doc.get_pages();
    assert_eq!(pages.len(), 1, "three cards fit one page");
    let page = doc.get_dictionary(pages[&1]).unwrap();
    let media: Vec<f32> = page
        .get(b"MediaBox")
        .and_then(Object::as_array)
        .unwrap()
        .iter()
        .map(|n| n.as_float().unwrap())
        .collect();
    assert_eq!(media.len(), 4);
    assert!(
        (media[2] - 595.28).abs() < 0.1 && (media[3] - 841.89).abs() < 0.1,
        "A4: {media:?}"
    );
    let fonts = embedded_fonts(&doc);
    let text: String = fonts.iter().map(|f| f.unicode.as_str()).collect();
    for letter in "आशगरङBikashRai".chars() {
        assert!(
            text.contains(letter),
            "{letter} is in an embedded font: {text}"
        );
    }
    assert!(
        fonts
            .iter()
            .any(|f| f.base_font.contains("NotoSansDevanagari") && f.program_bytes > 1000)
    );
    // The Souk mark is on the cards of a plan without white_label: its
    // `S` is in no other text of these cards.
    assert!(text.contains('S'), "{text}");
}

#[test]
fn white_label_drops_the_souk_mark_from_cards_and_public_pages() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    let a = issue(&host, &token, json!({"member": "M-1"}));
    assert_eq!(a.status, 201, "{a:?}");
    let verify_url = a.body["verification_url"].as_str().unwrap().to_owned();
    let link = host.post(
        &format!("{CARDS}/cards/C-000001/share-links"),
        &token,
        json!({}),
    );
    assert_eq!(link.status, 201, "{link:?}");
    let share_url = link.body["url"].as_str().unwrap().to_owned();
    let marked = |host: &Host| {
        let face = host.get(&format!("{CARDS}/cards/C-000001/card.svg"), &token);
        let face = String::from_utf8(face.bytes).unwrap();
        let verification = stranger_get(host, &verify_url, "text/html");
        let shared = stranger_get(host, &share_url, "text/html");
        assert_eq!((verification.status, shared.status), (200, 200));
        [
            face.contains("Verified with Souk"),
            verification.text.contains("Verified with Souk"),
            shared.text.contains("Verified with Souk"),
        ]
    };
    assert_eq!(marked(&host), [true; 3], "free carries the mark");
    grant(&host, "digital-card", "pro");
    assert_eq!(marked(&host), [true; 3], "pro carries the mark");
    let pro_png = png_of(&host, &token, "C-000001");
    let pro_pdf: String = embedded_fonts(&pdf_of(&host, &token, "C-000001"))
        .iter()
        .map(|f| f.unicode.clone())
        .collect();
    assert!(pro_pdf.contains('S') && pro_pdf.contains('k'), "{pro_pdf}");

    grant(&host, "digital-card", "business");
    assert_eq!(marked(&host), [false; 3], "business is white label");
    let business_png = png_of(&host, &token, "C-000001");
    // The two pictures differ only where the mark was: at the bottom
    // right of the card.
    assert_eq!(
        (pro_png.width, pro_png.height),
        (business_png.width, business_png.height)
    );
    let (w, h) = (pro_png.width, pro_png.height);
    let mut changed = Vec::new();
    for y in 0..h {
        for x in 0..w {
            if pro_png.pixel(x, y) != business_png.pixel(x, y) {
                changed.push((x, y));
            }
        }
    }
    assert!(!changed.is_empty(), "the mark is drawn on pro's PNG");
    assert!(
        changed.iter().all(|&(x, y)| x > w / 2 && y > h - h / 6),
        "only the mark's corner changes: {:?}",
        changed.first()
    );
    let business_pdf: String = embedded_fonts(&pdf_of(&host, &token, "C-000001"))
        .iter()
        .map(|f| f.unicode.clone())
        .collect();
    // Pro's PDF had the mark's letters; "Souk" is in no other text here.
    assert!(!business_pdf.contains('S'), "{business_pdf}");
    assert!(pro_pdf.contains('S'));

    // Back on free, the mark is back.
    grant(&host, "digital-card", "free");
    assert_eq!(marked(&host), [true; 3]);
}

#[test]
fn branding_dresses_the_verification_page_and_pdf_only_with_custom_branding() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    let a = issue(&host, &token, json!({"member": "M-1"}));
    assert_eq!(a.status, 201, "{a:?}");
    let verify_url = a.body["verification_url"].as_str().unwrap().to_owned();
    let page = |host: &Host| stranger_get(host, &verify_url, "text/html").text;
    let plain = page(&host);
    assert!(plain.contains("Valid card"), "{plain}");
    assert!(!plain.contains("#7c2d12") && !plain.contains("class=\"logo\""));

    grant(&host, "digital-card", "pro");
    let a = host.request(
        "PUT",
        &format!("{CARDS}/branding"),
        Some(&token),
        Some(
            json!({"background": "#fef3c7", "text": "#111111", "accent": "#7c2d12", "font": "serif"})
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let logo = solid_png(40, 40, [0x12, 0x34, 0x56]);
    let a = host.request(
        "PUT",
        &format!("{CARDS}/branding/logo"),
        Some(&token),
        Some(logo.clone()),
    );
    assert_eq!(a.status, 200, "{a:?}");

    let branded = page(&host);
    for needle in [
        "#7c2d12",
        "#fef3c7",
        "#111111",
        "Noto Serif",
        "class=\"logo\"",
    ] {
        assert!(branded.contains(needle), "{needle}: {branded}");
    }
    // The logo's URL is a signed file URL on this host serving the logo.
    let src = branded
        .split("class=\"logo\"")
        .next()
        .and_then(|before| before.rsplit("src=\"").next())
        .and_then(|rest| rest.split('"').next())
        .expect("the logo's src")
        .replace("&amp;", "&");
    let fetched = host
        .client
        .get(format!("{}{src}", host.base))
        .send()
        .expect("logo fetched");
    assert_eq!(fetched.status().as_u16(), 200, "{src}");
    assert_eq!(fetched.bytes().unwrap().to_vec(), logo);
    // The JSON answer is unchanged by branding.
    let json_answer = stranger_get(&host, &verify_url, "application/json").json();
    assert_eq!(json_answer["status"], "valid");

    // The PDF: serif font, the logo drawn, the background colour.
    let doc = pdf_of(&host, &token, "C-000001");
    let fonts = embedded_fonts(&doc);
    assert!(
        fonts.iter().any(|f| f.base_font.contains("NotoSerif")),
        "serif is embedded"
    );
    assert!(!fonts.iter().any(|f| f.base_font.contains("NotoSans-")));
    assert_eq!(images(&doc), 1, "the logo");
    let picture = png_of(&host, &token, "C-000001");
    assert_eq!(
        picture.pixel(20, picture.height / 2),
        [0xfe, 0xf3, 0xc7, 0xff]
    );

    // Back on free: the page and the card are plain again (the branding is
    // kept, unapplied).
    grant(&host, "digital-card", "free");
    let plain = page(&host);
    assert!(
        !plain.contains("#7c2d12")
            && !plain.contains("Noto Serif")
            && !plain.contains("class=\"logo\"")
    );
    grant(&host, "digital-card", "pro");
    let doc = pdf_of(&host, &token, "C-000001");
    assert_eq!(images(&doc), 1);
    // A logo that is not a decodable image is left out of the PDF and PNG
    // (the upload only checks its first bytes) instead of failing them.
    let a = host.request(
        "PUT",
        &format!("{CARDS}/branding/logo"),
        Some(&token),
        Some(b"\x89PNG\r\n\x1a\nnot really a png".to_vec()),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let doc = pdf_of(&host, &token, "C-000001");
    assert_eq!(images(&doc), 0);
    let picture = png_of(&host, &token, "C-000001");
    assert_eq!(
        picture.pixel(20, picture.height / 2),
        [0xfe, 0xf3, 0xc7, 0xff]
    );
}
