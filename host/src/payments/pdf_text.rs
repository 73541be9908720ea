//! Text in the invoice PDF: the embedded Noto fonts (`assets/fonts`, SIL
//! OFL 1.1), shaping, and the fonts' PDF objects.
//!
//! - **Fonts.** Noto Sans (Latin, Greek, Cyrillic; accents) and Noto Sans
//!   Devanagari, regular and bold, compiled in with `include_bytes!`:
//!   nothing is read from the machine's font directories. A run of text in
//!   the Devanagari block (U+0900–U+097F, U+A8E0–U+A8FF, with the joiners
//!   and the spaces and punctuation between such letters) is set in Noto
//!   Sans Devanagari, everything else in Noto Sans; a character neither
//!   font has prints as the font's missing-glyph box.
//! - **Shaping.** Each run is shaped with rustybuzz (HarfBuzz's algorithm):
//!   conjuncts, reordered vowel signs and marks come out as the font
//!   designs them; advances and mark offsets are kept exactly (`TJ`
//!   adjustments and text rise).
//! - **Embedding.** Each font used is a Type 0 font over a CIDFontType2
//!   whose program is subsetted to the glyphs used (subsetter; CIDs are
//!   the subset's glyph ids), with `/W` widths and a `/ToUnicode` CMap so
//!   text extracts and copies. A cluster whose glyphs cannot say its text
//!   through the CMap alone (a conjunct, a vowel sign drawn before its
//!   consonant, one glyph standing for different text in two places) is
//!   wrapped in a marked-content span with `/ActualText`, which PDF
//!   readers use for extraction instead of the glyphs.

use std::collections::BTreeMap;

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str, TextStr};
use rustybuzz::{Face, UnicodeBuffer};
use subsetter::GlyphRemapper;

const NOTO_SANS: &[u8] = include_bytes!("../../../assets/fonts/NotoSans-Regular.ttf");
const NOTO_SANS_BOLD: &[u8] = include_bytes!("../../../assets/fonts/NotoSans-Bold.ttf");
const NOTO_DEVANAGARI: &[u8] =
    include_bytes!("../../../assets/fonts/NotoSansDevanagari-Regular.ttf");
const NOTO_DEVANAGARI_BOLD: &[u8] =
    include_bytes!("../../../assets/fonts/NotoSansDevanagari-Bold.ttf");

/// The fonts, in the order of their resource names `F1`..`F4`.
const FONTS: [(&[u8], &str, &[u8]); 4] = [
    (NOTO_SANS, "NotoSans-Regular", b"F1"),
    (NOTO_SANS_BOLD, "NotoSans-Bold", b"F2"),
    (NOTO_DEVANAGARI, "NotoSansDevanagari-Regular", b"F3"),
    (NOTO_DEVANAGARI_BOLD, "NotoSansDevanagari-Bold", b"F4"),
];

/// Why the PDF's text could not be set (a broken font build; never input).
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// An embedded font does not parse.
    #[error("the embedded font {0} does not parse")]
    Font(&'static str),
    /// Subsetting a font failed.
    #[error("the embedded font {0} could not be subsetted")]
    Subset(&'static str),
}

/// One font as used in a document: its face, which of its glyphs were
/// used (old id → CID), their widths and what text each stands for.
struct UsedFont {
    face: Face<'static>,
    data: &'static [u8],
    base_font: &'static str,
    resource: &'static [u8],
    remapper: GlyphRemapper,
    /// CID → width in thousandths of an em.
    widths: BTreeMap<u16, f32>,
    /// CID → the text it stands for in the ToUnicode CMap.
    text: BTreeMap<u16, String>,
    /// 1000 / units per em.
    scale: f32,
}

/// A glyph placed in a line, in thousandths of an em.
#[derive(Debug, Clone)]
struct Placed {
    cid: u16,
    advance: f32,
    x_offset: f32,
    y_offset: f32,
}

/// A shaped cluster: its glyphs and, when the CMap cannot say its text,
/// the text to give as `/ActualText`.
#[derive(Debug, Clone)]
struct Cluster {
    glyphs: Vec<Placed>,
    actual_text: Option<String>,
}

/// A run of one font.
#[derive(Debug, Clone)]
struct Run {
    font: usize,
    clusters: Vec<Cluster>,
}

/// A shaped line of text.
#[derive(Debug, Clone)]
pub struct Shaped {
    runs: Vec<Run>,
    /// Its width in thousandths of an em.
    width: f32,
}

impl Shaped {
    /// Its width at `size` points.
    pub fn width(&self, size: f32) -> f32 {
        self.width * size / 1000.0
    }
}

/// Whether `c` is set in the Devanagari font.
fn is_devanagari(c: char) -> bool {
    matches!(c, '\u{0900}'..='\u{097F}' | '\u{A8E0}'..='\u{A8FF}' | '\u{1CD0}'..='\u{1CFF}')
}

/// Whether `c` goes with the run around it (spaces, joiners) rather than
/// choosing a font of its own.
fn is_neutral(c: char) -> bool {
    c == '\u{200C}' || c == '\u{200D}' || c.is_whitespace()
}

/// The text's runs: (Devanagari?, byte range). Spaces and joiners go
/// with the run they are in; a run of only those takes the next letter's
/// font.
fn split_runs(text: &str) -> Vec<(bool, std::ops::Range<usize>)> {
    let mut runs: Vec<(bool, std::ops::Range<usize>)> = Vec::new();
    for (at, c) in text.char_indices() {
        let end = at + c.len_utf8();
        if let Some((deva, range)) = runs.last_mut() {
            if is_neutral(c) || *deva == is_devanagari(c) {
                range.end = end;
                continue;
            }
            if text[range.clone()].chars().all(is_neutral) {
                *deva = is_devanagari(c);
                range.end = end;
                continue;
            }
        }
        runs.push((is_devanagari(c), at..end));
    }
    runs
}

/// Sets text in the embedded fonts and writes them into a PDF.
pub struct Typesetter {
    fonts: Vec<UsedFont>,
}

impl Typesetter {
    /// The four embedded fonts, none used yet.
    ///
    /// # Errors
    /// [`TextError::Font`] when an embedded font does not parse (a broken
    /// build).
    pub fn new() -> Result<Self, TextError> {
        let mut fonts = Vec::with_capacity(FONTS.len());
        for (data, base_font, resource) in FONTS {
            let face = Face::from_slice(data, 0).ok_or(TextError::Font(base_font))?;
            let scale = 1000.0 / face.units_per_em() as f32;
            let mut remapper = GlyphRemapper::new();
            // Glyph 0 (.notdef) stays glyph 0.
            remapper.remap(0);
            fonts.push(UsedFont {
                face,
                data,
                base_font,
                resource,
                remapper,
                widths: BTreeMap::new(),
                text: BTreeMap::new(),
                scale,
            });
        }
        Ok(Typesetter { fonts })
    }

    /// Shapes `text` (one line) in the regular or bold fonts.
    pub fn shape(&mut self, text: &str, bold: bool) -> Shaped {
        let mut runs = Vec::new();
        let mut width = 0.0;
        for (deva, range) in split_runs(text) {
            let font = usize::from(deva) * 2 + usize::from(bold);
            let run = self.shape_run(font, &text[range]);
            width += run
                .clusters
                .iter()
                .flat_map(|c| c.glyphs.iter())
                .map(|g| g.advance)
                .sum::<f32>();
            runs.push(run);
        }
        Shaped { runs, width }
    }

    fn shape_run(&mut self, font: usize, text: &str) -> Run {
        let used = &mut self.fonts[font];
        let mut buffer = UnicodeBuffer::new();
        buffer.push_str(text);
        buffer.guess_segment_properties();
        let shaped = rustybuzz::shape(&used.face, &[], buffer);
        let infos = shaped.glyph_infos();
        let positions = shaped.glyph_positions();
        // Cluster starts (byte offsets), sorted: a cluster's text runs to
        // the next start.
        let mut starts: Vec<usize> = infos.iter().map(|i| i.cluster as usize).collect();
        starts.sort_unstable();
        starts.dedup();
        let text_of = |start: usize| {
            let end = starts
                .iter()
                .find(|s| **s > start)
                .copied()
                .unwrap_or(text.len());
            text.get(start..end).unwrap_or("").to_owned()
        };
        let mut clusters: Vec<(usize, Vec<(u16, Placed)>)> = Vec::new();
        for (info, pos) in infos.iter().zip(positions) {
            let old = u16::try_from(info.glyph_id).unwrap_or(0);
            let cid = used.remapper.remap(old);
            let width = used
                .face
                .glyph_hor_advance(rustybuzz::ttf_parser::GlyphId(old))
                .unwrap_or(0) as f32
                * used.scale;
            used.widths.insert(cid, width);
            let placed = Placed {
                cid,
                advance: pos.x_advance as f32 * used.scale,
                x_offset: pos.x_offset as f32 * used.scale,
                y_offset: pos.y_offset as f32 * used.scale,
            };
            let cluster = info.cluster as usize;
            match clusters.last_mut() {
                Some((start, glyphs)) if *start == cluster => glyphs.push((old, placed)),
                _ => clusters.push((cluster, vec![(old, placed)])),
            }
        }
        let clusters = clusters
            .into_iter()
            .map(|(start, glyphs)| {
                let text = text_of(start);
                let simple = match glyphs.as_slice() {
                    [(_, only)] => match used.text.get(&only.cid) {
                        Some(known) => *known == text,
                        None => {
                            used.text.insert(only.cid, text.clone());
                            true
                        }
                    },
                    _ => {
                        // Each glyph maps to the character it draws, when it
                        // draws one; the cluster says its text itself.
                        for (old, placed) in &glyphs {
                            let drawn = text.chars().find(|c| {
                                used.face.glyph_index(*c)
                                    == Some(rustybuzz::ttf_parser::GlyphId(*old))
                            });
                            if let Some(c) = drawn {
                                used.text.entry(placed.cid).or_insert_with(|| c.to_string());
                            }
                        }
                        false
                    }
                };
                Cluster {
                    glyphs: glyphs.into_iter().map(|(_, p)| p).collect(),
                    actual_text: (!simple).then_some(text),
                }
            })
            .collect();
        Run { font, clusters }
    }

    /// Draws `shaped` with its baseline starting at (`x`, `y`), `size`
    /// points.
    pub fn show(&self, content: &mut Content, shaped: &Shaped, x: f32, y: f32, size: f32) {
        content.begin_text();
        content.next_line(x, y);
        let mut rise = 0.0;
        for run in &shaped.runs {
            content.set_font(Name(self.fonts[run.font].resource), size);
            for cluster in &run.clusters {
                if let Some(text) = &cluster.actual_text {
                    content
                        .begin_marked_content_with_properties(Name(b"Span"))
                        .properties()
                        .actual_text(TextStr(text));
                }
                for glyph in &cluster.glyphs {
                    let wanted = glyph.y_offset * size / 1000.0;
                    if wanted != rise {
                        content.set_rise(wanted);
                        rise = wanted;
                    }
                    let width = self.fonts[run.font]
                        .widths
                        .get(&glyph.cid)
                        .copied()
                        .unwrap_or(0.0);
                    let cid = glyph.cid.to_be_bytes();
                    let mut shown = content.show_positioned();
                    let mut items = shown.items();
                    if glyph.x_offset != 0.0 {
                        items.adjust(-glyph.x_offset);
                    }
                    items.show(Str(&cid));
                    let after = glyph.x_offset + width - glyph.advance;
                    if after.abs() > 0.001 {
                        items.adjust(after);
                    }
                }
                if cluster.actual_text.is_some() {
                    content.end_marked_content();
                }
            }
        }
        if rise != 0.0 {
            content.set_rise(0.0);
        }
        content.end_text();
    }

    /// The fonts' resource names and references, for a page's resources:
    /// every font that was used, each given the reference `alloc` answers.
    /// Call [`Typesetter::write_fonts`] with the same references.
    pub fn font_refs(&self, mut alloc: impl FnMut() -> Ref) -> Vec<(Name<'static>, Ref)> {
        self.fonts
            .iter()
            .filter(|f| !f.widths.is_empty())
            .map(|f| (Name(f.resource), alloc()))
            .collect()
    }

    /// Writes every used font into `pdf` at the references [`font_refs`]
    /// gave (in the same order), allocating its parts with `alloc`.
    ///
    /// [`font_refs`]: Typesetter::font_refs
    ///
    /// # Errors
    /// [`TextError::Subset`] when a font cannot be subsetted (a broken
    /// build).
    pub fn write_fonts(
        &self,
        pdf: &mut Pdf,
        refs: &[(Name<'static>, Ref)],
        mut alloc: impl FnMut() -> Ref,
    ) -> Result<(), TextError> {
        let used = self.fonts.iter().filter(|f| !f.widths.is_empty());
        for (font, (_, type0)) in used.zip(refs) {
            let cid_ref = alloc();
            let descriptor_ref = alloc();
            let cmap_ref = alloc();
            let file_ref = alloc();
            // A subset's name carries a tag of six capitals (PDF 9.6.4).
            let tag = subset_tag(font);
            let name = format!("{tag}+{}", font.base_font);
            pdf.type0_font(*type0)
                .base_font(Name(name.as_bytes()))
                .encoding_predefined(Name(b"Identity-H"))
                .descendant_font(cid_ref)
                .to_unicode(cmap_ref);
            let system = SystemInfo {
                registry: Str(b"Adobe"),
                ordering: Str(b"Identity"),
                supplement: 0,
            };
            let mut cid = pdf.cid_font(cid_ref);
            cid.subtype(CidFontType::Type2)
                .base_font(Name(name.as_bytes()))
                .system_info(system)
                .font_descriptor(descriptor_ref)
                .cid_to_gid_map_predefined(Name(b"Identity"));
            let mut widths = cid.widths();
            for (cid, width) in &font.widths {
                widths.consecutive(*cid, [*width]);
            }
            drop(widths);
            drop(cid);
            let face = &font.face;
            let bbox = face.global_bounding_box();
            let s = font.scale;
            pdf.font_descriptor(descriptor_ref)
                .name(Name(name.as_bytes()))
                .flags(FontFlags::NON_SYMBOLIC)
                .bbox(Rect::new(
                    f32::from(bbox.x_min) * s,
                    f32::from(bbox.y_min) * s,
                    f32::from(bbox.x_max) * s,
                    f32::from(bbox.y_max) * s,
                ))
                .italic_angle(0.0)
                .ascent(f32::from(face.ascender()) * s)
                .descent(f32::from(face.descender()) * s)
                .cap_height(f32::from(face.capital_height().unwrap_or(face.ascender())) * s)
                .stem_v(80.0)
                .font_file2(file_ref);
            let mut cmap = UnicodeCmap::new(Name(b"Custom"), system);
            for (cid, text) in &font.text {
                cmap.pair_with_multiple(*cid, text.chars());
            }
            pdf.cmap(cmap_ref, &cmap.finish())
                .system_info(system)
                .name(Name(b"Custom"));
            let program = subsetter::subset(font.data, 0, &font.remapper)
                .map_err(|_| TextError::Subset(font.base_font))?;
            pdf.stream(file_ref, &program);
        }
        Ok(())
    }
}

/// Six capitals derived from the glyphs a subset holds (the same subset,
/// the same tag).
fn subset_tag(font: &UsedFont) -> String {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    hash.update(font.base_font.as_bytes());
    for cid in font.widths.keys() {
        hash.update(cid.to_be_bytes());
    }
    hash.finalize()
        .iter()
        .take(6)
        .map(|b| char::from(b'A' + b % 26))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_by_script_and_neutral_characters_join_their_neighbours() {
        let text = "Bill to: नेपाल युवा क्लब (Kathmandu)";
        let runs: Vec<(bool, &str)> = split_runs(text)
            .into_iter()
            .map(|(d, r)| (d, &text[r]))
            .collect();
        assert_eq!(
            runs,
            [
                (false, "Bill to: "),
                (true, "नेपाल युवा क्लब "),
                (false, "(Kathmandu)")
            ]
        );
        assert_eq!(split_runs("  नेपाल"), [(true, 0..17)]);
    }

    #[test]
    fn devanagari_is_shaped_into_conjuncts_and_reordered_signs() {
        let mut set = Typesetter::new().unwrap();
        // क्ल: a conjunct; कि: the vowel sign i is drawn before ka.
        let shaped = set.shape("क्लब कि", false);
        let glyphs: usize = shaped.runs[0].clusters.iter().map(|c| c.glyphs.len()).sum();
        assert!(glyphs < "क्लब कि".chars().count(), "{shaped:?}");
        // The clusters whose glyphs cannot carry their text say it.
        let actual: Vec<&str> = shaped.runs[0]
            .clusters
            .iter()
            .filter_map(|c| c.actual_text.as_deref())
            .collect();
        assert!(actual.contains(&"कि"), "{actual:?}");
        assert!(shaped.width(11.0) > 0.0);
    }
}
