//! The `events:` section of a manifest (API 0.3.0): the event types a
//! module emits, the feature that gates webhooks for them, and the events
//! of its dependencies it subscribes to.
//!
//! ```yaml
//! events:
//!   emits: [member_joined, member_left]
//!   webhooks: { feature: webhooks }
//!   subscribe: ["membership.member_left"]
//! ```

use serde::Deserialize;

use super::{ApiVersion, Dependency, FeatureDecl, ManifestError, Slug};

/// Longest event type, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 64;
/// Most event types one module may declare under `emits`.
const MAX_EMITS: usize = 64;
/// Most subscriptions one module may declare.
const MAX_SUBSCRIPTIONS: usize = 64;

/// Checks an event type: `[a-z][a-z0-9_.]*`, at most
/// [`MAX_EVENT_TYPE_LEN`] bytes, no empty dot-separated part.
///
/// # Errors
/// A message saying which rule the text breaks.
pub fn check_event_type(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > MAX_EVENT_TYPE_LEN {
        return Err(format!(
            "an event type must be 1 to {MAX_EVENT_TYPE_LEN} bytes long"
        ));
    }
    if !text.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("an event type must start with a lowercase letter".into());
    }
    if !text
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
    {
        return Err("an event type may contain only lowercase letters, digits, '_' and '.'".into());
    }
    if text.split('.').any(str::is_empty) {
        return Err("an event type must not have an empty part between dots".into());
    }
    Ok(())
}

/// A subscription to a dependency's events: `<module>.<type>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subscription {
    /// The dependency whose events are delivered.
    pub module: Slug,
    /// The event type (as that module emits it).
    pub event_type: String,
}

impl Subscription {
    /// Parses `<module>.<type>` (a slug has no dot, so the first dot ends it).
    ///
    /// # Errors
    /// A message saying which rule the text breaks.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((module, event_type)) = text.split_once('.') else {
            return Err(format!(
                "{text:?} must be `<module>.<event type>`, e.g. `membership.member_left`"
            ));
        };
        let module = Slug::parse(module).map_err(|e| format!("module {module:?} {e}"))?;
        check_event_type(event_type)?;
        Ok(Subscription {
            module,
            event_type: event_type.to_owned(),
        })
    }
}

impl std::fmt::Display for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.module, self.event_type)
    }
}

/// What a module declares about events. Empty for a module without an
/// `events:` section (and for every module of API 0.1.0 and 0.2.0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsDecl {
    /// The event types the module may emit, sorted; emitting any other is
    /// refused.
    pub emits: Vec<String>,
    /// The feature a tenant's plan must grant for webhooks of this module's
    /// events (endpoints are created and deliveries made only then);
    /// `None`: webhooks are not gated.
    pub webhook_feature: Option<String>,
    /// The dependencies' events delivered to the module's `on-event`, sorted.
    pub subscribe: Vec<Subscription>,
}

impl EventsDecl {
    /// Whether the module declares `event_type` under `emits`.
    pub fn emits(&self, event_type: &str) -> bool {
        self.emits.iter().any(|t| t == event_type)
    }

    /// Whether the module subscribes to `module`'s `event_type`.
    pub fn subscribes_to(&self, module: &str, event_type: &str) -> bool {
        self.subscribe
            .iter()
            .any(|s| s.module.as_str() == module && s.event_type == event_type)
    }
}

/// `events:` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    #[serde(default)]
    emits: Vec<String>,
    #[serde(default)]
    webhooks: Option<RawWebhooks>,
    #[serde(default)]
    subscribe: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhooks {
    feature: String,
}

/// Checks `events:` against the rest of the manifest: API 0.3.0 or later,
/// valid and distinct types, a declared webhook feature, subscriptions only
/// to declared dependencies.
pub(super) fn parse(
    raw: Option<RawEvents>,
    api: ApiVersion,
    features: &[FeatureDecl],
    dependencies: &[Dependency],
) -> Result<EventsDecl, ManifestError> {
    let Some(raw) = raw else {
        return Ok(EventsDecl::default());
    };
    if api < ApiVersion::V0_3_0 {
        return Err(ManifestError::field(
            "events",
            "events need api 0.3.0 or later (older module APIs have no `events` import and no `on-event` export)",
        ));
    }
    if raw.emits.len() > MAX_EMITS {
        return Err(ManifestError::field(
            "events.emits",
            format!("at most {MAX_EMITS} event types"),
        ));
    }
    let mut emits = Vec::new();
    for (i, t) in raw.emits.into_iter().enumerate() {
        check_event_type(&t).map_err(|e| ManifestError::field(format!("events.emits[{i}]"), e))?;
        if emits.contains(&t) {
            return Err(ManifestError::field(
                format!("events.emits[{i}]"),
                format!("{t:?} is listed twice"),
            ));
        }
        emits.push(t);
    }
    emits.sort();
    let webhook_feature = match raw.webhooks {
        None => None,
        Some(RawWebhooks { feature }) => {
            if !features.iter().any(|f| f.key == feature) {
                return Err(ManifestError::field(
                    "events.webhooks.feature",
                    format!("{feature:?} is not declared under `features`"),
                ));
            }
            Some(feature)
        }
    };
    if raw.subscribe.len() > MAX_SUBSCRIPTIONS {
        return Err(ManifestError::field(
            "events.subscribe",
            format!("at most {MAX_SUBSCRIPTIONS} subscriptions"),
        ));
    }
    let mut subscribe = Vec::new();
    for (i, text) in raw.subscribe.iter().enumerate() {
        let field = format!("events.subscribe[{i}]");
        let s = Subscription::parse(text).map_err(|e| ManifestError::field(&field, e))?;
        if !dependencies.iter().any(|d| d.slug == s.module) {
            return Err(ManifestError::field(
                field,
                format!(
                    "{} is not under `dependencies`: a module subscribes only to the modules it depends on",
                    s.module
                ),
            ));
        }
        if subscribe.contains(&s) {
            return Err(ManifestError::field(
                field,
                format!("{text:?} is listed twice"),
            ));
        }
        subscribe.push(s);
    }
    subscribe.sort();
    Ok(EventsDecl {
        emits,
        webhook_feature,
        subscribe,
    })
}

#[cfg(test)]
mod tests {
    use crate::manifest::Manifest;

    const BASE: &str = r#"
slug: listener
name: Listener
version: 1.0.0
category: community
api: 0.3.0
dependencies:
  membership: ">=1, <2"
features:
  - key: webhooks
"#;

    fn with(events: &str) -> Result<Manifest, String> {
        Manifest::parse(&format!("{BASE}events:\n{events}")).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_emits_webhooks_and_subscriptions() {
        let m = with(
            "  emits: [member_left, card.issued]\n  webhooks: { feature: webhooks }\n  subscribe: [\"membership.member_left\"]\n",
        )
        .unwrap();
        assert_eq!(m.events.emits, vec!["card.issued", "member_left"]);
        assert!(m.events.emits("card.issued"));
        assert!(!m.events.emits("card"));
        assert_eq!(m.events.webhook_feature.as_deref(), Some("webhooks"));
        assert_eq!(m.events.subscribe[0].module.as_str(), "membership");
        assert_eq!(m.events.subscribe[0].event_type, "member_left");
        assert!(m.events.subscribes_to("membership", "member_left"));
        assert!(!m.events.subscribes_to("membership", "member_joined"));
        let none = Manifest::parse(BASE).unwrap();
        assert!(none.events.emits.is_empty() && none.events.subscribe.is_empty());
    }

    #[test]
    fn refuses_events_before_api_0_3_0() {
        let e = Manifest::parse(&format!(
            "{}events:\n  emits: [a]\n",
            BASE.replace("api: 0.3.0", "api: 0.2.0")
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("`events`") && e.contains("0.3.0"), "{e}");
        let e = Manifest::parse(&format!(
            "{}events:\n  subscribe: [\"membership.member_left\"]\n",
            BASE.replace("api: 0.3.0", "api: 0.1.0")
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("0.3.0"), "{e}");
    }

    #[test]
    fn refuses_bad_types_features_and_subscriptions() {
        for (events, field) in [
            ("  emits: [Member]\n", "events.emits[0]"),
            ("  emits: [1a]\n", "events.emits[0]"),
            ("  emits: [a-b]\n", "events.emits[0]"),
            ("  emits: [a..b]\n", "events.emits[0]"),
            ("  emits: [a.]\n", "events.emits[0]"),
            ("  emits: [a, a]\n", "events.emits[1]"),
            ("  webhooks: { feature: nope }\n", "events.webhooks.feature"),
            ("  subscribe: [\"membership\"]\n", "events.subscribe[0]"),
            ("  subscribe: [\"cards.issued\"]\n", "events.subscribe[0]"),
            ("  subscribe: [\"membership.Bad\"]\n", "events.subscribe[0]"),
            (
                "  subscribe: [\"membership.a\", \"membership.a\"]\n",
                "events.subscribe[1]",
            ),
            ("  surprise: 1\n", "surprise"),
        ] {
            let e = with(events).unwrap_err();
            assert!(e.contains(field), "{events}: {e}");
        }
        let long = format!("  emits: [{}]\n", "a".repeat(65));
        assert!(with(&long).unwrap_err().contains("64"));
        assert!(with(&format!("  emits: [{}]\n", "a".repeat(64))).is_ok());
    }

    #[test]
    fn a_subscription_names_a_dependency() {
        let e = with("  subscribe: [\"billing.paid\"]\n").unwrap_err();
        assert!(e.contains("dependencies"), "{e}");
    }
}
