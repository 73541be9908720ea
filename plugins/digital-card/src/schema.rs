//! The module's tables (release 1.0.0: the Basic plan's) and what a fresh
//! install starts with. Later releases add tables in later migrations;
//! released migrations never change.

use souk_sdk::{HookError, Migration, db, params};

/// Settings, templates, cards, share links, scans, and the events already
/// handled.
const BASIC: Migration = Migration::new(
    "0001_cards",
    "CREATE TABLE settings (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        organisation_name TEXT NOT NULL,
        verify_base_url TEXT,
        allow_multiple_active INTEGER NOT NULL DEFAULT 0 CHECK (allow_multiple_active IN (0, 1)),
        valid_days INTEGER NOT NULL DEFAULT 365 CHECK (valid_days BETWEEN 1 AND 3660),
        number_prefix TEXT NOT NULL,
        next_number INTEGER NOT NULL CHECK (next_number > 0)
    );
    CREATE TABLE templates (
        id INTEGER PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        tier TEXT NOT NULL CHECK (tier IN ('basic', 'advanced', 'premium', 'custom')),
        layout TEXT NOT NULL CHECK (layout IN ('classic', 'stripe', 'minimal')),
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        background TEXT NOT NULL,
        foreground TEXT NOT NULL,
        accent TEXT NOT NULL,
        fields TEXT NOT NULL
    );
    CREATE TABLE cards (
        id INTEGER PRIMARY KEY,
        number TEXT NOT NULL UNIQUE,
        member_number TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'expired', 'revoked')),
        status_reason TEXT,
        issued_on TEXT NOT NULL,
        expires_on TEXT NOT NULL,
        template TEXT NOT NULL,
        photo_file_id TEXT,
        token TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX cards_by_member ON cards (member_number, status);
    CREATE INDEX cards_by_status_expiry ON cards (status, expires_on);
    CREATE TABLE share_links (
        id INTEGER PRIMARY KEY,
        card_id INTEGER NOT NULL,
        token TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER
    );
    CREATE INDEX share_links_by_card ON share_links (card_id);
    CREATE TABLE scans (
        id INTEGER PRIMARY KEY,
        card_id INTEGER,
        scanned_at INTEGER NOT NULL,
        outcome TEXT NOT NULL
    );
    CREATE INDEX scans_by_card ON scans (card_id);
    CREATE TABLE handled_events (
        event_id TEXT PRIMARY KEY
    )",
    "DROP TABLE handled_events;
    DROP TABLE scans;
    DROP TABLE share_links;
    DROP TABLE cards;
    DROP TABLE templates;
    DROP TABLE settings",
);

/// Custom card fields (release 1.1.0): the tenant's definitions and each
/// card's values.
#[cfg(feature = "release-1-1")]
const CUSTOM_FIELDS: Migration = Migration::new(
    "0002_custom_fields",
    "CREATE TABLE card_fields (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('text', 'number', 'date', 'choice')),
        choices TEXT,
        required INTEGER NOT NULL DEFAULT 0 CHECK (required IN (0, 1))
    );
    CREATE TABLE card_field_values (
        card_id INTEGER NOT NULL,
        field_id INTEGER NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (card_id, field_id)
    )",
    "DROP TABLE card_field_values;
    DROP TABLE card_fields",
);

/// The tenant's branding (release 1.1.0): one row, nothing set.
#[cfg(feature = "release-1-1")]
const BRANDING: Migration = Migration::new(
    "0003_branding",
    "CREATE TABLE branding (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        background TEXT,
        text_colour TEXT,
        accent TEXT,
        font TEXT NOT NULL DEFAULT 'sans' CHECK (font IN ('sans', 'serif', 'mono')),
        logo_file_id TEXT
    );
    INSERT INTO branding (id) VALUES (1)",
    "DROP TABLE branding",
);

/// Templates (release 1.2.0): the table again with the new layouts
/// allowed and the columns the tenant's own templates need (idempotency
/// key, times), its rows copied; the advanced and premium templates
/// seeded (`INSERT OR IGNORE`: a fresh install and an upgrade from 1.0.0
/// or 1.1.0 end with the same rows); and an index to find the cards that
/// use a template. The down migration keeps the rows of the three old
/// layouts.
#[cfg(feature = "release-1-2")]
const TEMPLATES: Migration = Migration::new(
    "0004_templates",
    "CREATE TABLE templates_v2 (
        id INTEGER PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        tier TEXT NOT NULL CHECK (tier IN ('basic', 'advanced', 'premium', 'custom')),
        layout TEXT NOT NULL CHECK (layout IN ('classic', 'stripe', 'minimal', 'portrait', \
            'photo_left', 'gradient', 'watermark', 'diagonal')),
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        background TEXT NOT NULL,
        foreground TEXT NOT NULL,
        accent TEXT NOT NULL,
        fields TEXT NOT NULL,
        idempotency_key TEXT UNIQUE,
        created_at INTEGER,
        updated_at INTEGER
    );
    INSERT INTO templates_v2 (id, slug, name, tier, layout, width, height, background, \
        foreground, accent, fields) \
        SELECT id, slug, name, tier, layout, width, height, background, foreground, accent, \
        fields FROM templates;
    DROP TABLE templates;
    ALTER TABLE templates_v2 RENAME TO templates;
    INSERT OR IGNORE INTO templates (slug, name, tier, layout, width, height, background, \
        foreground, accent, fields) VALUES
        ('portrait', 'Portrait', 'advanced', 'portrait', 540, 856, '#ffffff', '#1f2933', \
            '#7c3aed', '[\"photo\",\"name\",\"member_number\",\"card_number\",\"expires_on\",\"qr\"]'),
        ('photo-left', 'Photo Left', 'advanced', 'photo_left', 856, 540, '#fffbeb', '#292524', \
            '#d97706', '[\"photo\",\"name\",\"member_number\",\"card_number\",\"expires_on\",\"qr\"]'),
        ('gradient-band', 'Gradient Band', 'advanced', 'gradient', 856, 540, '#f0f9ff', \
            '#0c4a6e', '#0284c7', '[\"photo\",\"name\",\"member_number\",\"expires_on\",\"qr\"]'),
        ('watermark', 'Watermark', 'premium', 'watermark', 856, 540, '#fdfcf7', '#3f2d1c', \
            '#b8860b', '[\"photo\",\"name\",\"member_number\",\"card_number\",\"expires_on\",\"qr\"]'),
        ('executive', 'Executive', 'premium', 'diagonal', 856, 540, '#0f172a', '#f8fafc', \
            '#c9a227', '[\"photo\",\"name\",\"card_number\",\"expires_on\",\"qr\"]');
    CREATE INDEX cards_by_template ON cards (template)",
    "DROP INDEX cards_by_template;
    CREATE TABLE templates_v1 (
        id INTEGER PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        tier TEXT NOT NULL CHECK (tier IN ('basic', 'advanced', 'premium', 'custom')),
        layout TEXT NOT NULL CHECK (layout IN ('classic', 'stripe', 'minimal')),
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        background TEXT NOT NULL,
        foreground TEXT NOT NULL,
        accent TEXT NOT NULL,
        fields TEXT NOT NULL
    );
    INSERT INTO templates_v1 (id, slug, name, tier, layout, width, height, background, \
        foreground, accent, fields) \
        SELECT id, slug, name, tier, layout, width, height, background, foreground, accent, \
        fields FROM templates WHERE layout IN ('classic', 'stripe', 'minimal');
    DROP TABLE templates;
    ALTER TABLE templates_v1 RENAME TO templates",
);

/// The migrations of this release, oldest first.
pub fn migrations() -> Vec<Migration> {
    #[cfg_attr(not(feature = "release-1-1"), allow(unused_mut))]
    let mut migrations = vec![BASIC];
    #[cfg(feature = "release-1-1")]
    migrations.push(CUSTOM_FIELDS);
    #[cfg(feature = "release-1-1")]
    migrations.push(BRANDING);
    #[cfg(feature = "release-1-2")]
    migrations.push(TEMPLATES);
    #[cfg(feature = "release-1-2")]
    migrations.push(crate::settings::PUBLIC_URL_MIGRATION);
    migrations
}

/// A template seeded on install: (slug, name, layout, background,
/// foreground, accent, fields).
type Seed = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// The three basic templates (credit-card proportions, 856 x 540).
const BASIC_TEMPLATES: [Seed; 3] = [
    (
        "classic",
        "Classic",
        "classic",
        "#ffffff",
        "#1f2933",
        "#1d4ed8",
        r#"["photo","name","member_number","card_number","expires_on","qr"]"#,
    ),
    (
        "stripe",
        "Stripe",
        "stripe",
        "#f8fafc",
        "#0f172a",
        "#b91c1c",
        r#"["name","member_number","expires_on","qr"]"#,
    ),
    (
        "minimal",
        "Minimal",
        "minimal",
        "#111827",
        "#f9fafb",
        "#10b981",
        r#"["name","card_number","qr"]"#,
    ),
];

/// Seeds a fresh install: settings and the basic templates.
///
/// # Errors
///
/// When a row cannot be written; the install rolls back.
pub fn seed() -> Result<(), HookError> {
    db::execute(
        "INSERT INTO settings (id, organisation_name, number_prefix, next_number) \
         VALUES (1, 'Our organisation', 'C-', 1)",
        params![],
    )?;
    for (slug, name, layout, background, foreground, accent, fields) in BASIC_TEMPLATES {
        db::execute(
            "INSERT INTO templates (slug, name, tier, layout, width, height, background, \
             foreground, accent, fields) VALUES (?1, ?2, 'basic', ?3, 856, 540, ?4, ?5, ?6, ?7)",
            params![slug, name, layout, background, foreground, accent, fields],
        )?;
    }
    Ok(())
}
