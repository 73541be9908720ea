//! The fonts card faces are drawn with in PNG and PDF exports: Noto Sans,
//! Noto Serif and Noto Sans Devanagari (Regular and Bold, SIL Open Font
//! License 1.1, `assets/fonts` at the top of the repository), compiled
//! into the component. Nothing is read from a file system: a module has
//! none, and a card must look the same wherever it is rendered.
//!
//! The SVG a browser shows names the same families; a viewer without them
//! installed falls back to its own sans-serif or serif.

use std::sync::Arc;

use usvg::fontdb::{self, Database, Source, Style, Weight};

/// The font family of a card face without branding (and of branding's
/// `sans`): Latin, Greek and Cyrillic from Noto Sans, Nepali (Devanagari)
/// from Noto Sans Devanagari.
pub const SANS: &str = "Noto Sans, Noto Sans Devanagari, sans-serif";
/// Branding's `serif`. Noto Serif has no Devanagari; Nepali text falls
/// back to Noto Sans Devanagari.
#[cfg_attr(not(feature = "release-1-1"), allow(dead_code))]
pub const SERIF: &str = "Noto Serif, Noto Sans Devanagari, serif";
/// Branding's `mono`. No monospaced face is embedded: a browser showing
/// the SVG uses its own monospace font, PNG and PDF exports draw it with
/// Noto Sans (the database's monospace family).
#[cfg_attr(not(feature = "release-1-1"), allow(dead_code))]
pub const MONO: &str = "Noto Sans Mono, Noto Sans Devanagari, monospace";

/// The embedded font files, in the order fallback tries them.
const FILES: [&[u8]; 6] = [
    include_bytes!("../../../assets/fonts/NotoSans-Regular.ttf"),
    include_bytes!("../../../assets/fonts/NotoSans-Bold.ttf"),
    include_bytes!("../../../assets/fonts/NotoSerif-Regular.ttf"),
    include_bytes!("../../../assets/fonts/NotoSerif-Bold.ttf"),
    include_bytes!("../../../assets/fonts/NotoSansDevanagari-Regular.ttf"),
    include_bytes!("../../../assets/fonts/NotoSansDevanagari-Bold.ttf"),
];

/// A font database holding the embedded fonts only, with the generic
/// families (`sans-serif`, `serif`, `monospace`) mapped onto them.
///
/// The files are borrowed from the component's data, not copied; building
/// the database reads each file's name and style tables (well under a
/// millisecond each).
pub fn database() -> Arc<Database> {
    let mut db = Database::new();
    for file in FILES {
        db.load_font_source(Source::Binary(Arc::new(file)));
    }
    db.set_sans_serif_family("Noto Sans");
    db.set_serif_family("Noto Serif");
    db.set_monospace_family("Noto Sans");
    db.set_cursive_family("Noto Sans");
    db.set_fantasy_family("Noto Sans");
    Arc::new(db)
}

/// The face to draw a character the chosen font lacks (a Nepali name in
/// Noto Sans): among the faces not tried yet that have it, the one
/// closest in weight to the chosen face, upright before italic. usvg's
/// own choice takes the first face with the character whatever its
/// weight, so a bold name would come out regular.
pub fn fallback(c: char, tried: &[fontdb::ID], db: &Database) -> Option<fontdb::ID> {
    let base = tried.first().and_then(|id| db.face(*id));
    let (weight, style) = base.map_or((Weight::NORMAL, Style::Normal), |f| (f.weight, f.style));
    db.faces()
        .filter(|face| !tried.contains(&face.id) && has_char(db, face.id, c))
        .min_by_key(|face| {
            (
                face.weight.0.abs_diff(weight.0),
                u8::from(face.style != style),
            )
        })
        .map(|face| face.id)
}

/// Whether the face has a glyph for the character.
fn has_char(db: &Database, id: fontdb::ID, c: char) -> bool {
    db.with_face_data(id, |data, index| {
        ttf_parser::Face::parse(data, index)
            .ok()
            .and_then(|face| face.glyph_index(c))
            .is_some()
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use usvg::fontdb::{Family, Query};

    fn query(db: &Database, family: Family<'_>, weight: Weight) -> Option<String> {
        let id = db.query(&Query {
            families: &[family],
            weight,
            ..Query::default()
        })?;
        db.face(id).map(|face| face.post_script_name.clone())
    }

    #[test]
    fn every_family_a_face_names_is_in_the_database() {
        let db = database();
        assert_eq!(db.len(), FILES.len());
        for (family, weight, expected) in [
            (
                Family::Name("Noto Sans"),
                Weight::NORMAL,
                "NotoSans-Regular",
            ),
            (Family::Name("Noto Sans"), Weight::BOLD, "NotoSans-Bold"),
            (Family::Name("Noto Serif"), Weight::BOLD, "NotoSerif-Bold"),
            (
                Family::Name("Noto Sans Devanagari"),
                Weight::NORMAL,
                "NotoSansDevanagari-Regular",
            ),
            (Family::SansSerif, Weight::NORMAL, "NotoSans-Regular"),
            (Family::Serif, Weight::NORMAL, "NotoSerif-Regular"),
            (Family::Monospace, Weight::NORMAL, "NotoSans-Regular"),
        ] {
            assert_eq!(query(&db, family, weight).as_deref(), Some(expected));
        }
    }

    #[test]
    fn nepali_falls_back_to_devanagari_of_the_same_weight() {
        let db = database();
        let face = |name: &str| {
            db.faces()
                .find(|f| f.post_script_name == name)
                .map(|f| f.id)
                .unwrap()
        };
        let pick = |base: &str| {
            let id = fallback('न', &[face(base)], &db).unwrap();
            db.face(id).unwrap().post_script_name.clone()
        };
        assert_eq!(pick("NotoSans-Bold"), "NotoSansDevanagari-Bold");
        assert_eq!(pick("NotoSerif-Regular"), "NotoSansDevanagari-Regular");
        // A character no embedded face has: no fallback (drawn as .notdef).
        assert_eq!(fallback('\u{4e00}', &[face("NotoSans-Regular")], &db), None);
    }
}
