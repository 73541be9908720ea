//! A card's face as SVG with everything it shows loaded: its template with
//! the tenant's branding applied (while the plan has `custom_branding`),
//! the holder's name, photo and custom fields, the QR code of its
//! verification URL, and the Souk mark unless the plan has `white_label`.
//! `card.svg`, `card.png`, `card.pdf` and the print export all draw this
//! one face.
//!
//! [`Faces`] holds what every card of a call shares (settings, the plan's
//! answers, each template's branded look and logo), so a print export of
//! a thousand cards reads them once.

use std::collections::HashMap;

use souk_sdk::{Problem, entitlements, files};

use crate::card::{Card, verification_url};
use crate::raster::{ImageUse, prepare_image};
use crate::render::{self, Face};
use crate::routes::Branded;
use crate::{members, settings};

/// How photos and logos go into the face.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Images {
    /// As uploaded: the SVG a browser shows (`card.svg`).
    AsUploaded,
    /// Through [`prepare_image`]: decoded within bounds and scaled down,
    /// for a face that is rasterised or converted to PDF; an image that
    /// does not decode is left out.
    Prepared,
}

/// What the faces of one call share.
pub struct Faces {
    organisation: String,
    base_url: String,
    souk_mark: bool,
    images: Images,
    /// Branded template, font family and logo, by template slug.
    looks: HashMap<String, Branded>,
}

impl Faces {
    /// Loads the settings and the plan's `white_label` answer.
    ///
    /// # Errors
    ///
    /// A database problem, or a 409 while `verify_base_url` is not set
    /// (a face carries its QR code).
    pub fn load(images: Images) -> Result<Self, Problem> {
        let settings = settings::load()?;
        let base_url = settings.base_url()?.to_owned();
        Ok(Self {
            organisation: settings.organisation_name,
            base_url,
            souk_mark: !entitlements::has_feature("white_label"),
            images,
            looks: HashMap::new(),
        })
    }

    fn image(
        &self,
        image: Option<(String, Vec<u8>)>,
        purpose: ImageUse,
    ) -> Option<(String, Vec<u8>)> {
        match (image, self.images) {
            (Some((content_type, bytes)), Images::Prepared) => {
                prepare_image(&content_type, &bytes, purpose)
            }
            (image, _) => image,
        }
    }

    /// The card's face as SVG.
    ///
    /// # Errors
    ///
    /// A database or file problem, or a template the card names that is
    /// gone.
    pub fn svg(&mut self, card: &Card) -> Result<String, Problem> {
        if !self.looks.contains_key(&card.template) {
            let template = render::find(&card.template)?.ok_or_else(|| {
                Problem::internal(format!("template `{}` is missing", card.template))
            })?;
            let (template, font_family, logo) = crate::routes::branded(template)?;
            let logo = self.image(logo, ImageUse::Logo);
            self.looks
                .insert(card.template.clone(), (template, font_family, logo));
        }
        let photo = match &card.photo_file_id {
            Some(id) => {
                let info = files::get(id)?;
                self.image(Some((info.content_type, files::read(id)?)), ImageUse::Photo)
            }
            None => None,
        };
        let holder = members::name_of(&card.member_number)?;
        let extra = crate::routes::field_lines(card)?;
        let (template, font_family, logo) = self
            .looks
            .get(&card.template)
            .ok_or_else(|| Problem::internal(format!("template `{}` is missing", card.template)))?;
        let face = Face {
            organisation: &self.organisation,
            holder: &holder,
            member_number: &card.member_number,
            card_number: &card.number,
            expires_on: &card.expires_on,
            status: &card.status,
            photo,
            verification_url: Some(verification_url(&self.base_url, &card.token)),
            souk_mark: self.souk_mark,
            extra,
            font_family: *font_family,
            logo: logo.clone(),
        };
        render::card_svg(template, &face).map_err(Problem::internal)
    }
}
