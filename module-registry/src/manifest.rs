//! The module manifest (`module.yaml`), parsed into typed values.
//!
//! See `docs/module-manifest.md` for the format. Every constraint on a field
//! is checked here, once, so the rest of the system works with values that
//! are known to be valid.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

use crate::schedule::{RawSchedule, Schedule};
use crate::yaml::{self, YamlError, YamlLimits};

mod files;
pub use files::{FileType, FilesDecl};
mod events;
mod pages;
pub use pages::{MAX_REDIRECT_ORIGINS, PagesDecl, normalize_origin, origin_of_url};

pub use events::{EventsDecl, MAX_EVENT_TYPE_LEN, Subscription, check_event_type};

/// Longest slug accepted.
const MAX_SLUG_LEN: usize = 40;
/// Longest identifier (feature, limit, table) accepted.
const MAX_IDENT_LEN: usize = 63;
/// Longest module version accepted, in bytes (`1.2.3-rc.1+build.5` is 18).
/// A version becomes part of file names (packages, caches, archives), which
/// most file systems cap at 255 bytes, with the slug and a suffix beside it.
pub const MAX_VERSION_LEN: usize = 64;

/// Parses a module version from outside: semver, at most
/// [`MAX_VERSION_LEN`] bytes.
///
/// # Errors
/// A message saying which rule the text breaks.
pub fn parse_version(text: &str) -> Result<semver::Version, String> {
    if text.len() > MAX_VERSION_LEN {
        return Err(format!(
            "is {} bytes long; a version may be at most {MAX_VERSION_LEN} bytes",
            text.len()
        ));
    }
    semver::Version::parse(text).map_err(|e| format!("{text:?} is not semver: {e}"))
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The YAML was refused before it was read (anchors, aliases, merge
    /// keys, too large or too deep), did not parse, or a field had the wrong
    /// shape.
    #[error("module.yaml is not valid: {0}")]
    Yaml(#[from] YamlError),
    /// A field parsed but its value breaks a rule.
    #[error("module.yaml field `{field}` is invalid: {reason}")]
    Field {
        /// The field path, e.g. `routes[2].path`.
        field: String,
        /// What rule the value breaks.
        reason: String,
    },
}

impl ManifestError {
    fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ManifestError::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A module slug: `[a-z][a-z0-9-]*`, no `--`, no trailing `-`, at most 40
/// characters. Slugs map injectively onto SQL table prefixes
/// ([`Slug::table_prefix`]), which is why the rules are this strict.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slug(String);

impl Slug {
    /// Parses a slug.
    ///
    /// # Errors
    /// Returns a message saying which rule the text breaks.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > MAX_SLUG_LEN {
            return Err(format!("must be 1 to {MAX_SLUG_LEN} characters long"));
        }
        let mut chars = text.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
            return Err("must start with a lowercase letter".into());
        }
        if !text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err("may contain only lowercase letters, digits and '-'".into());
        }
        if text.contains("--") || text.ends_with('-') {
            return Err("must not contain \"--\" or end with '-'".into());
        }
        Ok(Slug(text.to_owned()))
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefix of this module's tables in a tenant database:
    /// `digital-card` becomes `digital_card__`. Because slugs never contain
    /// `--` nor end with `-`, the first `__` in a physical table name always
    /// ends the prefix, so two modules can never map to the same table.
    pub fn table_prefix(&self) -> String {
        format!("{}__", self.0.replace('-', "_"))
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Slug {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Slug::parse(&text).map_err(|e| serde::de::Error::custom(format!("slug {text:?} {e}")))
    }
}

/// A table name a module uses: `[a-z][a-z0-9_]*` without `__`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName(String);

impl TableName {
    /// Parses a table name (case-insensitive; stored lowercase).
    ///
    /// # Errors
    /// Returns a message saying which rule the text breaks.
    pub fn parse(text: &str) -> Result<Self, String> {
        let lower = text.to_ascii_lowercase();
        check_ident(&lower)?;
        if lower.contains("__") {
            return Err("must not contain \"__\" (reserved for module namespaces)".into());
        }
        Ok(TableName(lower))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_ident(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > MAX_IDENT_LEN {
        return Err(format!("must be 1 to {MAX_IDENT_LEN} characters long"));
    }
    if !text.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter".into());
    }
    if !text
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err("may contain only lowercase letters, digits and '_'".into());
    }
    Ok(())
}

/// The WIT API version a component targets (`wit/since_v<major.minor.patch>/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    /// Major part.
    pub major: u32,
    /// Minor part.
    pub minor: u32,
    /// Patch part.
    pub patch: u32,
}

impl ApiVersion {
    /// The first released API.
    pub const V0_1_0: ApiVersion = ApiVersion {
        major: 0,
        minor: 1,
        patch: 0,
    };

    /// The second released API: 0.1.0 plus the `entitlements` interface.
    pub const V0_2_0: ApiVersion = ApiVersion {
        major: 0,
        minor: 2,
        patch: 0,
    };

    /// The third released API: the precise caller, replay flags, `files`,
    /// `events`, `notify`, `jobs`, and the `run-job` and `on-event` exports.
    pub const V0_3_0: ApiVersion = ApiVersion {
        major: 0,
        minor: 3,
        patch: 0,
    };

    /// Every API version a module may target, oldest first. The host links
    /// each of them (`wit/since_v<version>/`).
    pub const SUPPORTED: [ApiVersion; 3] = [Self::V0_1_0, Self::V0_2_0, Self::V0_3_0];

    /// Whether this version is one of [`ApiVersion::SUPPORTED`].
    pub fn is_supported(self) -> bool {
        Self::SUPPORTED.contains(&self)
    }

    /// [`ApiVersion::SUPPORTED`] as text, e.g. `0.1.0, 0.2.0`.
    pub fn supported_list() -> String {
        Self::SUPPORTED
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Parses `major.minor.patch`.
    ///
    /// # Errors
    /// Returns a message when the text is not three dot-separated numbers.
    pub fn parse(text: &str) -> Result<Self, String> {
        let v = semver::Version::parse(text)
            .map_err(|e| format!("{text:?} is not a version like 0.1.0: {e}"))?;
        if !v.pre.is_empty() || !v.build.is_empty() {
            return Err(format!(
                "{text:?} must not carry a pre-release or build tag"
            ));
        }
        let part = |n: u64| u32::try_from(n).map_err(|_| format!("{text:?} is too large"));
        Ok(ApiVersion {
            major: part(v.major)?,
            minor: part(v.minor)?,
            patch: part(v.patch)?,
        })
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A dependency on another module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The module depended on.
    pub slug: Slug,
    /// The versions that satisfy the dependency.
    pub requirement: semver::VersionReq,
}

/// A boolean capability the module can gate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureDecl {
    /// `[a-z][a-z0-9_]*`.
    pub key: String,
    /// Shown to tenants and operators.
    #[serde(default)]
    pub description: String,
    /// What the feature unlocks in the host (default `plain`).
    #[serde(default)]
    pub kind: FeatureKind,
}

/// What a feature unlocks in the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKind {
    /// A capability the module checks itself, or a route's `feature`.
    #[default]
    Plain,
    /// Sign-in with the tenant's OpenID Connect provider (API 0.3.0): the
    /// host allows it when a subscription grants the feature.
    Sso,
}

impl FeatureKind {
    /// The kind as `module.yaml` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureKind::Plain => "plain",
            FeatureKind::Sso => "sso",
        }
    }
}

/// How a limit is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitKind {
    /// A standing quantity that is consumed and released.
    Count,
    /// A quantity per period, reset each period.
    Meter,
    /// Bytes of files stored (API 0.3.0): a standing quantity the host
    /// counts itself as files are put and deleted.
    Storage,
    /// Emails sent per period (API 0.3.0): a meter the host counts itself
    /// as the module queues messages.
    Email,
}

impl LimitKind {
    /// The kind as `module.yaml` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Count => "count",
            LimitKind::Meter => "meter",
            LimitKind::Storage => "storage",
            LimitKind::Email => "email",
        }
    }

    /// Whether the limit is a standing quantity (a plan sets it under
    /// `limits`): `count` and `storage`.
    pub fn is_standing(self) -> bool {
        matches!(self, LimitKind::Count | LimitKind::Storage)
    }

    /// Whether the limit is a quantity per period (a plan sets it under
    /// `meters`): `meter` and `email`.
    pub fn is_periodic(self) -> bool {
        !self.is_standing()
    }

    /// Whether the host counts it itself (`storage`, `email`); a module's
    /// own `consume`, `release` and `record-usage` are refused for these.
    pub fn is_host_counted(self) -> bool {
        matches!(self, LimitKind::Storage | LimitKind::Email)
    }
}

/// A numeric limit the module can gate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitDecl {
    /// `[a-z][a-z0-9_]*`.
    pub key: String,
    /// Shown to tenants and operators.
    #[serde(default)]
    pub description: String,
    /// How it is counted.
    pub kind: LimitKind,
}

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

/// A route path pattern such as `/members/{id}` or `/files/{*rest}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    text: String,
    segments: Vec<Segment>,
}

/// The result of matching a path against a [`RoutePattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// Named parameters captured from the path.
    pub params: Vec<(String, String)>,
}

impl RoutePattern {
    /// Parses a pattern.
    ///
    /// # Errors
    /// Returns a message when the pattern does not start with `/`, has an
    /// empty or malformed `{}` segment, or a `{*rest}` that is not last.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("{text:?} must start with '/'"));
        };
        let mut segments = Vec::new();
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            let segment = if let Some(inner) =
                part.strip_prefix('{').and_then(|p| p.strip_suffix('}'))
            {
                if let Some(name) = inner.strip_prefix('*') {
                    if i + 1 != parts.len() {
                        return Err(format!("{text:?}: {{*{name}}} must be the last segment"));
                    }
                    check_ident(name).map_err(|e| format!("{text:?}: parameter {name:?} {e}"))?;
                    Segment::Rest(name.to_owned())
                } else {
                    check_ident(inner).map_err(|e| format!("{text:?}: parameter {inner:?} {e}"))?;
                    Segment::Param(inner.to_owned())
                }
            } else {
                if part.is_empty() || part.contains(['{', '}']) {
                    return Err(format!("{text:?}: segment {part:?} is empty or malformed"));
                }
                Segment::Literal((*part).to_owned())
            };
            segments.push(segment);
        }
        Ok(RoutePattern {
            text: text.to_owned(),
            segments,
        })
    }

    /// The pattern as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Matches a request path (starting with `/`) against this pattern.
    pub fn matches(&self, path: &str) -> Option<RouteMatch> {
        let rest = path.strip_prefix('/')?;
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let mut params = Vec::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(lit) => {
                    if parts.get(i) != Some(&lit.as_str()) {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    let part = parts.get(i).filter(|p| !p.is_empty())?;
                    params.push((name.clone(), (*part).to_owned()));
                }
                Segment::Rest(name) => {
                    params.push((name.clone(), parts[i.min(parts.len())..].join("/")));
                    return Some(RouteMatch { params });
                }
            }
        }
        (parts.len() == self.segments.len()).then_some(RouteMatch { params })
    }
}

/// Who may call a route (`access:`; API 0.3.0 for anything but `admin`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// No credential needed; the host rate-limits anonymous callers per
    /// client address. A credential valid for the tenant still names the
    /// caller.
    Public,
    /// Any active signed-in user of the tenant, and every credential an
    /// `admin` route accepts.
    Member,
    /// The operator, the tenant's tokens, and signed-in users with role
    /// `admin` (the default: what every route of a module built before API
    /// 0.3.0 is).
    #[default]
    Admin,
}

impl Access {
    /// The level as `module.yaml` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Member => "member",
            Access::Admin => "admin",
        }
    }
}

/// How the tenant's API keys reach the module (`api_keys:`, API 0.3.0).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysDecl {
    /// The declared feature a tenant's plan must grant for a call made with
    /// an API key; without it the call is refused (402) before the module
    /// runs.
    pub feature: String,
}

/// A route the host forwards to the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Upper-case HTTP method.
    pub method: String,
    /// The path pattern.
    pub path: RoutePattern,
    /// The feature this route needs, if any.
    pub feature: Option<String>,
    /// A count limit (`kind: count`) that must have room for one more unit
    /// before the module runs (the module consumes it itself).
    pub limit: Option<String>,
    /// A meter (`kind: meter`) charged one unit for every successful (2xx)
    /// answer; refused before the module runs once the period's allowance is
    /// used up.
    pub meter: Option<String>,
    /// Who may call it (default [`Access::Admin`]).
    pub access: Access,
}

/// A parsed, validated module manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Unique module identifier.
    pub slug: Slug,
    /// Display name.
    pub name: String,
    /// The version of this package.
    pub version: semver::Version,
    /// What the module does.
    pub description: String,
    /// Marketplace category.
    pub category: String,
    /// The WIT API version the component targets.
    pub api: ApiVersion,
    /// Modules this one needs, sorted by slug.
    pub dependencies: Vec<Dependency>,
    /// Tables dependants may read.
    pub exports: Vec<TableName>,
    /// Features the module can gate, sorted by key.
    pub features: Vec<FeatureDecl>,
    /// Limits the module can gate, sorted by key.
    pub limits: Vec<LimitDecl>,
    /// Routes the host forwards to the module.
    pub routes: Vec<Route>,
    /// Whether the tenant's API keys may call the module, and which feature
    /// such calls need; `None`: no API key can be made for it.
    pub api_keys: Option<ApiKeysDecl>,
    /// Plans the module suggests (`plans:`, the shape of one module's
    /// `plans` in the operator's catalog), kept as YAML text: the host
    /// parses and checks them and uses them for a module its operator has
    /// not priced. `None` when the manifest suggests none.
    pub suggested_plans: Option<String>,
    /// Jobs the host queues on a cadence for every tenant with the module
    /// installed (`schedules:`, API 0.3.0 and later), in manifest order.
    pub schedules: Vec<Schedule>,
    /// The files the module may store through the host (`files:`, API
    /// 0.3.0); `None`: the module stores none.
    pub files: Option<FilesDecl>,
    /// What the module emits and subscribes to (`events:`, API 0.3.0);
    /// empty when the manifest has no such section.
    pub events: EventsDecl,
    /// What the module's answers may do in a browser beyond its own pages
    /// (`pages:`, API 0.3.0); default: nothing.
    pub pages: PagesDecl,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    slug: Slug,
    name: String,
    version: String,
    #[serde(default)]
    description: String,
    category: String,
    api: String,
    #[serde(default)]
    dependencies: BTreeMap<String, String>,
    #[serde(default)]
    exports: Vec<String>,
    #[serde(default)]
    features: Vec<FeatureDecl>,
    #[serde(default)]
    limits: Vec<LimitDecl>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    plans: Option<serde_yaml::Value>,
    #[serde(default)]
    schedules: Vec<RawSchedule>,
    #[serde(default)]
    api_keys: Option<ApiKeysDecl>,
    files: Option<files::RawFiles>,
    events: Option<events::RawEvents>,
    pages: Option<pages::RawPages>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    method: String,
    path: String,
    #[serde(default)]
    feature: Option<String>,
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    meter: Option<String>,
    #[serde(default)]
    access: Access,
}

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl Manifest {
    /// Parses and validates `module.yaml` text.
    ///
    /// # Errors
    /// [`ManifestError::Yaml`] when the YAML is refused by [`yaml::check`]
    /// (anchors, aliases, merge keys, size, depth), is malformed, has an
    /// unknown field or a field of the wrong type; [`ManifestError::Field`]
    /// naming the field when a value breaks a rule.
    pub fn parse(yaml: &str) -> Result<Self, ManifestError> {
        let raw: RawManifest = yaml::from_str(yaml, YamlLimits::MANIFEST)?;
        if raw.name.trim().is_empty() || raw.name.len() > 100 {
            return Err(ManifestError::field("name", "must be 1 to 100 characters"));
        }
        let version =
            parse_version(&raw.version).map_err(|e| ManifestError::field("version", e))?;
        check_ident(&raw.category.replace('-', "_"))
            .map_err(|e| ManifestError::field("category", e))?;
        let api = ApiVersion::parse(&raw.api).map_err(|e| ManifestError::field("api", e))?;
        if !api.is_supported() {
            return Err(ManifestError::field(
                "api",
                format!(
                    "{api} is not a module API version this release supports (supported: {})",
                    ApiVersion::supported_list()
                ),
            ));
        }

        let mut dependencies = Vec::new();
        for (slug, range) in raw.dependencies {
            let field = format!("dependencies.{slug}");
            let slug = Slug::parse(&slug).map_err(|e| ManifestError::field(&field, e))?;
            if slug == raw.slug {
                return Err(ManifestError::field(
                    field,
                    "a module cannot depend on itself",
                ));
            }
            let requirement = semver::VersionReq::parse(&range).map_err(|e| {
                ManifestError::field(&field, format!("{range:?} is not a semver range: {e}"))
            })?;
            dependencies.push(Dependency { slug, requirement });
        }

        let mut exports = Vec::new();
        for (i, table) in raw.exports.iter().enumerate() {
            let name = TableName::parse(table)
                .map_err(|e| ManifestError::field(format!("exports[{i}]"), e))?;
            if exports.contains(&name) {
                return Err(ManifestError::field(
                    format!("exports[{i}]"),
                    "is listed twice",
                ));
            }
            exports.push(name);
        }

        let mut features = raw.features;
        let mut keys = BTreeSet::new();
        for (i, f) in features.iter().enumerate() {
            check_ident(&f.key)
                .map_err(|e| ManifestError::field(format!("features[{i}].key"), e))?;
            if !keys.insert(f.key.clone()) {
                return Err(ManifestError::field(
                    format!("features[{i}].key"),
                    format!("{:?} is declared twice", f.key),
                ));
            }
            if f.kind != FeatureKind::Plain && api < ApiVersion::V0_3_0 {
                return Err(ManifestError::field(
                    format!("features[{i}].kind"),
                    format!("`kind: {}` needs api 0.3.0 or later", f.kind.as_str()),
                ));
            }
        }
        features.sort();
        let mut limits = raw.limits;
        for (i, l) in limits.iter().enumerate() {
            check_ident(&l.key).map_err(|e| ManifestError::field(format!("limits[{i}].key"), e))?;
            if !keys.insert(l.key.clone()) {
                return Err(ManifestError::field(
                    format!("limits[{i}].key"),
                    format!("{:?} is already declared as a feature or limit", l.key),
                ));
            }
            if l.kind.is_host_counted() && api < ApiVersion::V0_3_0 {
                return Err(ManifestError::field(
                    format!("limits[{i}].kind"),
                    format!("`kind: {}` needs api 0.3.0 or later", l.kind.as_str()),
                ));
            }
        }
        limits.sort();
        let files = parse_files(raw.files, api, &limits)?;

        let mut routes = Vec::new();
        for (i, r) in raw.routes.into_iter().enumerate() {
            let method = r.method.to_ascii_uppercase();
            if !METHODS.contains(&method.as_str()) {
                return Err(ManifestError::field(
                    format!("routes[{i}].method"),
                    format!("{:?} is not one of {}", r.method, METHODS.join(", ")),
                ));
            }
            let path = RoutePattern::parse(&r.path)
                .map_err(|e| ManifestError::field(format!("routes[{i}].path"), e))?;
            if let Some(feature) = &r.feature
                && !features.iter().any(|f| &f.key == feature)
            {
                return Err(ManifestError::field(
                    format!("routes[{i}].feature"),
                    format!("{feature:?} is not declared under `features`"),
                ));
            }
            for (field, key, kind) in [
                ("limit", &r.limit, LimitKind::Count),
                ("meter", &r.meter, LimitKind::Meter),
            ] {
                if let Some(key) = key
                    && !limits.iter().any(|l| &l.key == key && l.kind == kind)
                {
                    return Err(ManifestError::field(
                        format!("routes[{i}].{field}"),
                        format!(
                            "{key:?} is not declared under `limits` with `kind: {}`",
                            kind.as_str()
                        ),
                    ));
                }
            }
            if r.access != Access::Admin && api < ApiVersion::V0_3_0 {
                return Err(ManifestError::field(
                    format!("routes[{i}].access"),
                    format!("`access: {}` needs api 0.3.0 or later", r.access.as_str()),
                ));
            }
            if routes
                .iter()
                .any(|x: &Route| x.method == method && x.path.as_str() == path.as_str())
            {
                return Err(ManifestError::field(
                    format!("routes[{i}]"),
                    format!("{method} {} is declared twice", path.as_str()),
                ));
            }
            routes.push(Route {
                method,
                path,
                feature: r.feature,
                limit: r.limit,
                meter: r.meter,
                access: r.access,
            });
        }

        if let Some(keys) = &raw.api_keys {
            if api < ApiVersion::V0_3_0 {
                return Err(ManifestError::field(
                    "api_keys",
                    "API keys need api 0.3.0 or later",
                ));
            }
            if !features.iter().any(|f| f.key == keys.feature) {
                return Err(ManifestError::field(
                    "api_keys.feature",
                    format!("{:?} is not declared under `features`", keys.feature),
                ));
            }
        }

        let suggested_plans = match raw.plans {
            None => None,
            Some(plans @ serde_yaml::Value::Sequence(_)) => Some(
                serde_yaml::to_string(&plans)
                    .map_err(|e| ManifestError::field("plans", e.to_string()))?,
            ),
            Some(_) => {
                return Err(ManifestError::field(
                    "plans",
                    "must be a list of plans, as under `modules.<slug>.plans` in a plan catalog",
                ));
            }
        };

        let schedules = parse_schedules(raw.schedules, api)?;
        let events = events::parse(raw.events, api, &features, &dependencies)?;
        let pages = match raw.pages {
            None => PagesDecl::default(),
            Some(_) if api < ApiVersion::V0_3_0 => {
                return Err(ManifestError::field("pages", "needs api 0.3.0 or later"));
            }
            Some(pages) => pages
                .parse()
                .map_err(|(field, reason)| ManifestError::field(field, reason))?,
        };

        Ok(Manifest {
            slug: raw.slug,
            name: raw.name,
            version,
            description: raw.description,
            category: raw.category,
            api,
            dependencies,
            exports,
            features,
            limits,
            routes,
            api_keys: raw.api_keys,
            suggested_plans,
            schedules,
            files,
            events,
            pages,
        })
    }

    /// Finds the route for a request: the route and what its path
    /// captured, or why there is none (the path is unknown — a 404 — or
    /// known only with other methods — a 405). `HEAD` is served by a `GET`
    /// route.
    pub fn route_for(&self, method: &str, path: &str) -> RouteLookup<'_> {
        let mut path_known = false;
        for route in &self.routes {
            if let Some(m) = route.path.matches(path) {
                if route.method == method || (method == "HEAD" && route.method == "GET") {
                    return RouteLookup::Found(route, m);
                }
                path_known = true;
            }
        }
        if path_known {
            RouteLookup::MethodNotAllowed
        } else {
            RouteLookup::NoRoute
        }
    }
}

/// Checks `schedules:`: API 0.3.0 or later (the job runs through
/// `run-job`), each one valid, no name twice.
fn parse_schedules(raw: Vec<RawSchedule>, api: ApiVersion) -> Result<Vec<Schedule>, ManifestError> {
    if !raw.is_empty() && api < ApiVersion::V0_3_0 {
        return Err(ManifestError::field(
            "schedules",
            "needs api 0.3.0 or later (a schedule runs through the run-job export)",
        ));
    }
    let mut schedules: Vec<Schedule> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let schedule = r.parse().map_err(|(field, reason)| {
            let path = if field.is_empty() {
                format!("schedules[{i}]")
            } else {
                format!("schedules[{i}].{field}")
            };
            ManifestError::field(path, reason)
        })?;
        if schedules.iter().any(|s| s.name == schedule.name) {
            return Err(ManifestError::field(
                format!("schedules[{i}].name"),
                format!("{:?} is declared twice", schedule.name),
            ));
        }
        schedules.push(schedule);
    }
    Ok(schedules)
}

/// Checks `files:` against the API version and the declared limits: API
/// 0.3.0 or later, at most one `kind: storage` limit, and, when there is
/// one, `files.limit` naming it.
fn parse_files(
    raw: Option<files::RawFiles>,
    api: ApiVersion,
    limits: &[LimitDecl],
) -> Result<Option<FilesDecl>, ManifestError> {
    let storage: Vec<&str> = limits
        .iter()
        .filter(|l| l.kind == LimitKind::Storage)
        .map(|l| l.key.as_str())
        .collect();
    if storage.len() > 1 {
        return Err(ManifestError::field(
            "limits",
            format!(
                "at most one limit may have `kind: storage`, not {}: {}",
                storage.len(),
                storage.join(", ")
            ),
        ));
    }
    // A storage limit without a `files:` section counts nothing (the
    // module can store no files); it is allowed, as any unused limit is.
    let Some(raw) = raw else {
        return Ok(None);
    };
    if api < ApiVersion::V0_3_0 {
        return Err(ManifestError::field("files", "needs api 0.3.0 or later"));
    }
    raw.parse(&storage)
        .map(Some)
        .map_err(|(field, reason)| ManifestError::field(field, reason))
}

/// The answer of [`Manifest::route_for`].
#[derive(Debug)]
pub enum RouteLookup<'a> {
    /// The route that serves the request, and what its path captured.
    Found(&'a Route, RouteMatch),
    /// Some route has this path, none with this method.
    MethodNotAllowed,
    /// No route has this path.
    NoRoute,
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
slug: digital-card
name: Digital Card
version: 1.2.3
description: Cards.
category: community
api: 0.1.0
dependencies:
  membership: ">=1.2, <2"
exports: [cards]
features:
  - key: qr_code_generation
    description: QR codes
limits:
  - key: max_cards
    kind: count
  - key: qr_scans_per_month
    kind: meter
routes:
  - method: get
    path: /cards/{id}
    feature: qr_code_generation
    meter: qr_scans_per_month
  - method: POST
    path: /cards
    limit: max_cards
  - method: GET
    path: /files/{*rest}
"#;

    #[test]
    fn parses_a_complete_manifest() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.slug.as_str(), "digital-card");
        assert_eq!(m.slug.table_prefix(), "digital_card__");
        assert_eq!(m.version, semver::Version::new(1, 2, 3));
        assert_eq!(m.api, ApiVersion::V0_1_0);
        assert_eq!(m.dependencies[0].slug.as_str(), "membership");
        assert!(
            m.dependencies[0]
                .requirement
                .matches(&semver::Version::new(1, 4, 0))
        );
        assert!(
            !m.dependencies[0]
                .requirement
                .matches(&semver::Version::new(2, 0, 0))
        );
        assert_eq!(m.routes[0].method, "GET");
    }

    #[test]
    fn routes_match_params_rest_and_methods() {
        let m = Manifest::parse(GOOD).unwrap();
        let RouteLookup::Found(route, found) = m.route_for("GET", "/cards/42") else {
            panic!("GET /cards/42 has a route");
        };
        assert_eq!(route.feature.as_deref(), Some("qr_code_generation"));
        assert_eq!(route.meter.as_deref(), Some("qr_scans_per_month"));
        let RouteLookup::Found(route, _) = m.route_for("POST", "/cards") else {
            panic!("POST /cards has a route");
        };
        assert_eq!(route.limit.as_deref(), Some("max_cards"));
        assert_eq!(found.params, vec![("id".to_string(), "42".to_string())]);
        assert!(matches!(
            m.route_for("DELETE", "/cards/42"),
            RouteLookup::MethodNotAllowed
        ));
        assert!(matches!(
            m.route_for("GET", "/cards/42/x"),
            RouteLookup::NoRoute
        ));
        assert!(matches!(
            m.route_for("GET", "/cards/"),
            RouteLookup::NoRoute
        ));
        let RouteLookup::Found(_, found) = m.route_for("GET", "/files/a/b.png") else {
            panic!("GET /files/a/b.png has a route");
        };
        assert_eq!(found.params[0].1, "a/b.png");
    }

    fn error_of(yaml: &str) -> String {
        Manifest::parse(yaml).unwrap_err().to_string()
    }

    #[test]
    fn refuses_bad_fields_naming_them() {
        let e = error_of(&GOOD.replace("slug: digital-card", "slug: Digital--Card"));
        assert!(e.contains("slug"), "{e}");
        let e = error_of(&GOOD.replace("version: 1.2.3", "version: one"));
        assert!(e.contains("`version`"), "{e}");
        let e = error_of(&GOOD.replace(">=1.2, <2", "bananas"));
        assert!(e.contains("dependencies.membership"), "{e}");
        let e = error_of(&GOOD.replace("exports: [cards]", "exports: [a__b]"));
        assert!(e.contains("exports[0]"), "{e}");
        let e = error_of(&GOOD.replace("feature: qr_code_generation", "feature: nope"));
        assert!(e.contains("routes[0].feature"), "{e}");
        let e = error_of(&GOOD.replace("limit: max_cards", "limit: qr_scans_per_month"));
        assert!(
            e.contains("routes[1].limit") && e.contains("kind: count"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("meter: qr_scans_per_month", "meter: max_cards"));
        assert!(
            e.contains("routes[0].meter") && e.contains("kind: meter"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("limit: max_cards", "limit: nope"));
        assert!(e.contains("routes[1].limit"), "{e}");
        let e = error_of(&GOOD.replace("method: POST", "method: BREW"));
        assert!(e.contains("routes[1].method"), "{e}");
        let e = error_of(&GOOD.replace("/files/{*rest}", "/files/{*rest}/x"));
        assert!(e.contains("routes[2].path"), "{e}");
        let e = error_of(&format!("{GOOD}\nplans: free\n"));
        assert!(e.contains("`plans`"), "{e}");
        let m = Manifest::parse(&format!(
            "{GOOD}\nplans:\n  - slug: free\n    name: Free\n    free: true\n    interval: monthly\n"
        ))
        .unwrap();
        assert!(m.suggested_plans.unwrap().contains("slug: free"));
        let e = error_of(&format!("{GOOD}\nsurprise: 1\n"));
        assert!(e.contains("surprise"), "{e}");
        let e = error_of("slug: [");
        assert!(e.contains("not valid"), "{e}");
        let e = error_of(&GOOD.replace("api: 0.1.0", "api: banana"));
        assert!(e.contains("`api`"), "{e}");
    }

    const FILES: &str = r#"
slug: attachments
name: Attachments
version: 1.0.0
category: tools
api: 0.3.0
limits:
  - key: attachment_bytes
    kind: storage
files:
  types: [application/pdf, image/png, "IMAGE/JPEG"]
  limit: attachment_bytes
"#;

    #[test]
    fn files_declare_sniffable_types_and_one_storage_limit() {
        let m = Manifest::parse(FILES).unwrap();
        let files = m.files.unwrap();
        assert_eq!(
            files.types,
            vec![FileType::Png, FileType::Jpeg, FileType::Pdf]
        );
        assert_eq!(files.limit.as_deref(), Some("attachment_bytes"));
        assert!(files.allows(FileType::Pdf) && !files.allows(FileType::Svg));
        assert_eq!(Manifest::parse(GOOD).unwrap().files, None);
        let e = error_of(&FILES.replace("api: 0.3.0", "api: 0.2.0"));
        assert!(
            e.contains("`limits[0].kind`") || e.contains("`files`"),
            "{e}"
        );
        let no_limit = FILES
            .replace(
                "limits:\n  - key: attachment_bytes\n    kind: storage\n",
                "",
            )
            .replace("  limit: attachment_bytes\n", "");
        let m = Manifest::parse(&no_limit).unwrap();
        assert_eq!(m.files.unwrap().limit, None);
        let e = error_of(&no_limit.replace("api: 0.3.0", "api: 0.2.0"));
        assert!(e.contains("`files`") && e.contains("0.3.0"), "{e}");
    }

    #[test]
    fn files_refuse_unsniffable_types_duplicates_and_wrong_limits() {
        let e = error_of(&FILES.replace("application/pdf", "text/html"));
        assert!(
            e.contains("`files.types[0]`") && e.contains("text/html"),
            "{e}"
        );
        let e = error_of(&FILES.replace("application/pdf", "image/png"));
        assert!(e.contains("`files.types[1]`") && e.contains("twice"), "{e}");
        let e = error_of(&FILES.replace("[application/pdf, image/png, \"IMAGE/JPEG\"]", "[]"));
        assert!(e.contains("`files.types`"), "{e}");
        let e = error_of(&FILES.replace("  limit: attachment_bytes", "  limit: nope"));
        assert!(
            e.contains("`files.limit`") && e.contains("kind: storage"),
            "{e}"
        );
        let e = error_of(&FILES.replace("  limit: attachment_bytes\n", ""));
        assert!(e.contains("`files.limit`"), "{e}");
        let without_section = FILES.split("files:").next().unwrap().to_owned();
        assert_eq!(Manifest::parse(&without_section).unwrap().files, None);
        let two = FILES.replace(
            "    kind: storage\n",
            "    kind: storage\n  - key: more_bytes\n    kind: storage\n",
        );
        let e = error_of(&two);
        assert!(e.contains("`limits`") && e.contains("at most one"), "{e}");
        let e = error_of(&FILES.replace(
            "  limit: attachment_bytes",
            "  limit: attachment_bytes\n  extra: 1",
        ));
        assert!(e.contains("extra"), "{e}");
    }

    #[test]
    fn only_supported_api_versions_are_accepted() {
        let m = Manifest::parse(&GOOD.replace("api: 0.1.0", "api: 0.2.0")).unwrap();
        assert_eq!(m.api, ApiVersion::V0_2_0);
        let m = Manifest::parse(&GOOD.replace("api: 0.1.0", "api: 0.3.0")).unwrap();
        assert_eq!(m.api, ApiVersion::V0_3_0);
        for unsupported in ["0.4.0", "1.0.0", "0.1.1"] {
            let e = error_of(&GOOD.replace("api: 0.1.0", &format!("api: {unsupported}")));
            assert!(e.contains("`api`"), "{e}");
            assert!(e.contains("supported: 0.1.0, 0.2.0, 0.3.0"), "{e}");
        }
    }

    #[test]
    fn host_counted_kinds_and_sso_need_api_0_3() {
        let storage = (
            "    kind: count\n",
            "    kind: count\n  - key: attachment_bytes\n    kind: storage\n",
        );
        let sso = (
            "    description: QR codes\n",
            "    description: QR codes\n  - key: sso\n    kind: sso\n",
        );
        for (from, to) in [storage, sso] {
            let old = GOOD
                .replace("api: 0.1.0", "api: 0.2.0")
                .replacen(from, to, 1);
            let e = error_of(&old);
            assert!(e.contains("needs api 0.3.0"), "{e}");
            let new = GOOD
                .replace("api: 0.1.0", "api: 0.3.0")
                .replacen(from, to, 1);
            Manifest::parse(&new).unwrap();
        }
    }

    #[test]
    fn versions_are_bounded_in_length() {
        let at_limit = format!("1.0.0-{}", "a".repeat(MAX_VERSION_LEN - 6));
        let m = Manifest::parse(&GOOD.replace("version: 1.2.3", &format!("version: {at_limit}")))
            .unwrap();
        assert_eq!(m.version.to_string(), at_limit);
        for long in [
            format!("1.0.0-{}", "a".repeat(MAX_VERSION_LEN - 5)),
            format!("1.0.0-{}", "a".repeat(300)),
            format!("1.0.0+{}", "b".repeat(300)),
            format!("1.0.0-{}", "x.".repeat(200) + "y"),
            format!("{}.0.0", "1".repeat(70)),
        ] {
            let e = error_of(&GOOD.replace("version: 1.2.3", &format!("version: {long}")));
            assert!(
                e.contains("`version`") && e.contains("at most 64 bytes"),
                "{e}"
            );
            assert!(parse_version(&long).is_err());
        }
        assert!(parse_version("1.2.3").is_ok());
    }

    #[test]
    fn yaml_bombs_in_a_manifest_are_refused_before_reading() {
        let mut bomb = format!("{GOOD}\nx0: &x0 [{}]\n", ["lol"; 10].join(", "));
        for i in 1..10 {
            bomb.push_str(&format!(
                "x{i}: &x{i} [{}]\n",
                std::iter::repeat_n(format!("*x{}", i - 1), 10)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let under_plans = format!(
            "{GOOD}\nplans:\n  - &p {{slug: free, name: Free, free: true, interval: monthly}}\n{}",
            "  - *p\n".repeat(1000)
        );
        let merge = format!(
            "{GOOD}\nplans:\n  - slug: free\n    <<: {{name: Free, free: true, interval: monthly}}\n"
        );
        let deep = format!(
            "{GOOD}\nplans: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        for (text, says) in [
            (bomb, "aliases"),
            (under_plans, "aliases"),
            (merge, "merge keys"),
            (deep, "levels deep"),
        ] {
            let e = Manifest::parse(&text).unwrap_err();
            assert!(matches!(e, ManifestError::Yaml(_)), "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
    }

    #[test]
    fn slug_prefixes_are_injective() {
        for bad in ["a--b", "a-", "-a", "1a", "a_b", "", "A"] {
            assert!(Slug::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(TableName::parse("x__y").is_err());
    }

    #[test]
    fn schedules_parse_for_api_0_3_0_only() {
        let v3 = GOOD.replace("api: 0.1.0", "api: 0.3.0");
        let m = Manifest::parse(&format!(
            "{v3}\nschedules:\n  - name: nightly_expiry\n    every: 1d\n  - name: report\n    at: \"02:00\"\n"
        ))
        .unwrap();
        assert_eq!(
            m.schedules,
            vec![
                Schedule {
                    name: "nightly_expiry".into(),
                    cadence: crate::schedule::Cadence::Every(86_400)
                },
                Schedule {
                    name: "report".into(),
                    cadence: crate::schedule::Cadence::DailyAt(120)
                },
            ]
        );
        let old = error_of(&format!("{GOOD}\nschedules:\n  - name: n\n    every: 1d\n"));
        assert!(
            old.contains("`schedules`") && old.contains("0.3.0"),
            "{old}"
        );
        for (body, field) in [
            ("  - name: n\n    every: 10s\n", "schedules[0].every"),
            ("  - name: n\n    at: \"25:00\"\n", "schedules[0].at"),
            ("  - name: N\n    every: 1h\n", "schedules[0].name"),
            ("  - name: n\n", "schedules[0]"),
            (
                "  - name: n\n    every: 1h\n    at: \"01:00\"\n",
                "schedules[0]",
            ),
            (
                "  - name: n\n    every: 1h\n  - name: n\n    at: \"01:00\"\n",
                "schedules[1].name",
            ),
        ] {
            let e = error_of(&format!("{v3}\nschedules:\n{body}"));
            assert!(e.contains(&format!("`{field}`")), "{body}: {e}");
        }
        let e = Manifest::parse(&format!(
            "{v3}\nschedules:\n  - name: n\n    every: 1h\n    cron: x\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("cron"), "{e}");
    }

    #[test]
    fn route_access_defaults_to_admin_and_parses_each_level() {
        let m = Manifest::parse(GOOD).unwrap();
        assert!(m.routes.iter().all(|r| r.access == Access::Admin));
        let v3 = GOOD.replace("api: 0.1.0", "api: 0.3.0");
        for (level, access) in [
            ("public", Access::Public),
            ("member", Access::Member),
            ("admin", Access::Admin),
        ] {
            let yaml = v3.replace(
                "    limit: max_cards\n",
                &format!("    limit: max_cards\n    access: {level}\n"),
            );
            let m = Manifest::parse(&yaml).unwrap();
            let RouteLookup::Found(route, _) = m.route_for("POST", "/cards") else {
                panic!("POST /cards has a route");
            };
            assert_eq!(route.access, access);
            assert_eq!(route.access.as_str(), level);
        }
    }

    #[test]
    fn public_and_member_routes_need_api_0_3_and_a_known_level() {
        for (api, level) in [("0.1.0", "public"), ("0.2.0", "member")] {
            let yaml = GOOD.replace("api: 0.1.0", &format!("api: {api}")).replace(
                "    limit: max_cards\n",
                &format!("    limit: max_cards\n    access: {level}\n"),
            );
            let e = error_of(&yaml);
            assert!(e.contains("routes[1].access"), "{e}");
            assert!(e.contains("needs api 0.3.0"), "{e}");
        }
        // `admin` is what older modules are anyway: allowed at any version.
        let yaml = GOOD.replace(
            "    limit: max_cards\n",
            "    limit: max_cards\n    access: admin\n",
        );
        assert!(Manifest::parse(&yaml).is_ok());
        let yaml = GOOD.replace("api: 0.1.0", "api: 0.3.0").replace(
            "    limit: max_cards\n",
            "    limit: max_cards\n    access: everyone\n",
        );
        assert!(Manifest::parse(&yaml).is_err());
    }

    #[test]
    fn pages_list_redirect_origins_and_need_api_0_3() {
        let v3 = GOOD.replace("api: 0.1.0", "api: 0.3.0");
        let m = Manifest::parse(&format!(
            "{v3}pages:\n  redirect_origins: [\"HTTPS://Pay.example.com:443\", https://pay.example.com]\n"
        ))
        .unwrap();
        assert_eq!(m.pages.redirect_origins, ["https://pay.example.com"]);
        assert_eq!(Manifest::parse(&v3).unwrap().pages, PagesDecl::default());
        let e = error_of(&format!(
            "{v3}pages:\n  redirect_origins: [https://pay.example.com/checkout]\n"
        ));
        assert!(e.contains("pages.redirect_origins[0]"), "{e}");
        let e = error_of(&format!(
            "{GOOD}pages:\n  redirect_origins: [https://pay.example.com]\n"
        ));
        assert!(e.contains("`pages`"), "{e}");
        assert!(Manifest::parse(&format!("{v3}pages:\n  cookies: true\n")).is_err());
        let many: Vec<String> = (0..=MAX_REDIRECT_ORIGINS)
            .map(|i| format!("https://h{i}.example"))
            .collect();
        let e = error_of(&format!(
            "{v3}pages:\n  redirect_origins: [{}]\n",
            many.join(", ")
        ));
        assert!(e.contains("at most"), "{e}");
    }

    #[test]
    fn api_keys_name_a_declared_feature_and_need_api_0_3() {
        let v3 = GOOD.replace("api: 0.1.0", "api: 0.3.0");
        let m =
            Manifest::parse(&format!("{v3}api_keys:\n  feature: qr_code_generation\n")).unwrap();
        assert_eq!(
            m.api_keys,
            Some(ApiKeysDecl {
                feature: "qr_code_generation".into()
            })
        );
        assert_eq!(Manifest::parse(&v3).unwrap().api_keys, None);
        let e = error_of(&format!("{v3}api_keys:\n  feature: api_access\n"));
        assert!(e.contains("api_keys.feature"), "{e}");
        let e = error_of(&format!("{GOOD}api_keys:\n  feature: qr_code_generation\n"));
        assert!(e.contains("`api_keys`"), "{e}");
        assert!(
            Manifest::parse(&format!(
                "{v3}api_keys:\n  feature: qr_code_generation\n  extra: 1\n"
            ))
            .is_err()
        );
    }
}
