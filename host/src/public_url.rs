//! Where the host serves modules to the public: the origin of module
//! mounts (`/t/{tenant}/m/{module}`), known once `souk serve` has bound its
//! listeners. The request path tells each module call its mount's absolute
//! URL in a header the host owns ([`PUBLIC_URL_HEADER`]), so a module can
//! link to itself (QR codes, share links) without being told by its tenant.
//!
//! The origin comes only from the host's own configuration (the module
//! origin, `--module-origin` or the module listener's address, else the
//! API listener's), never from a request's `Host` header, which a client
//! chooses.

use std::sync::OnceLock;

/// The request header that carries the public URL of the module's mount
/// for the tenant; the host drops any copy a client sends.
pub const PUBLIC_URL_HEADER: &str = "souk-public-url";

/// The public origin of module mounts, set once when the host starts
/// serving; unset (no header) in CLI commands that serve nothing.
#[derive(Debug, Default)]
pub struct PublicOrigin {
    origin: OnceLock<String>,
}

impl PublicOrigin {
    /// Records the origin (`scheme://host[:port]`; a trailing `/` is
    /// dropped). Only the first call counts: the origin does not change
    /// while the host runs.
    pub fn set(&self, origin: &str) {
        let _ = self.origin.set(origin.trim_end_matches('/').to_owned());
    }

    /// The absolute URL of `module`'s mount for the tenant `tenant_slug`
    /// (`{origin}/t/{tenant}/m/{module}`), once the origin is known.
    /// Slugs are lowercase letters, digits and `-`, so they need no
    /// escaping.
    pub fn mount_url(&self, tenant_slug: &str, module: &str) -> Option<String> {
        self.origin
            .get()
            .map(|origin| format!("{origin}/t/{tenant_slug}/m/{module}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_url_is_the_origin_and_the_mount_once_the_origin_is_set() {
        let origin = PublicOrigin::default();
        assert_eq!(origin.mount_url("acme", "digital-card"), None);
        origin.set("https://m.example.org/");
        origin.set("http://ignored.example");
        assert_eq!(
            origin.mount_url("acme", "digital-card").as_deref(),
            Some("https://m.example.org/t/acme/m/digital-card")
        );
    }
}
