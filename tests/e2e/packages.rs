//! Packages are refused with messages that say what is wrong.

use crate::support::{Host, package, raw_package};

fn refused(host: &Host, bytes: Vec<u8>, needle: &str) {
    let a = host.add_package(bytes);
    assert_eq!(a.status, 422, "{a:?}");
    assert_eq!(
        a.body["type"], "https://souk.dev/problems/package-refused",
        "{a:?}"
    );
    assert!(
        a.detail().contains(needle),
        "{:?} should mention {needle:?}",
        a.detail()
    );
}

#[test]
fn malformed_manifests_are_refused_naming_the_field() {
    let host = Host::start(&[]);
    refused(
        &host,
        package("membership", |m| {
            m.replace("version: 1.2.0", "version: eleven")
        }),
        "`version`",
    );
    refused(
        &host,
        package("membership", |m| {
            m.replace("slug: membership", "slug: Member Ship")
        }),
        "slug",
    );
    refused(
        &host,
        package("membership", |m| format!("{m}\nunexpected_field: 1\n")),
        "unexpected_field",
    );
    refused(
        &host,
        package("membership", |m| {
            m.replace("kind: count", "kind: sometimes")
        }),
        "kind",
    );
    refused(
        &host,
        package("membership", |_| "::: not yaml".into()),
        "module.yaml",
    );
    assert_eq!(
        host.get("/v1/modules", &host.operator.clone()).body,
        serde_json::json!([])
    );
}

#[test]
fn a_manifest_that_disagrees_with_its_component_is_refused() {
    let host = Host::start(&[]);
    refused(
        &host,
        package("membership", |m| {
            m.replace(
                "features:\n",
                "features:\n  - key: teleport\n    description: no\n",
            )
        }),
        "teleport",
    );
    refused(
        &host,
        package("membership", |m| {
            m.replace(
                "  - key: member_export\n    description: Export the member list as CSV.\n",
                "",
            )
            .replace("    feature: member_export\n", "\n")
        }),
        "member_export",
    );
    refused(
        &host,
        package("membership", |m| m.replace("kind: count", "kind: meter")),
        "max_members",
    );
    refused(
        &host,
        package("membership", |m| m.replace("api: 0.3.0", "api: 0.1.0")),
        "api",
    );
}

#[test]
fn non_components_and_garbage_are_refused() {
    let host = Host::start(&[]);
    // A core module (layer 0), not a component.
    let manifest = std::fs::read_to_string(crate::support::module_files("membership").0).unwrap();
    let core = b"\0asm\x01\0\0\0".to_vec();
    let bytes = raw_package(&manifest, &core);
    refused(&host, bytes, "not a valid WebAssembly component");
    // A component header followed by garbage.
    let broken = [b"\0asm\x0d\0\x01\0".as_slice(), &[0xff; 64]].concat();
    let bytes = raw_package(&manifest, &broken);
    refused(&host, bytes, "not a valid WebAssembly component");
    refused(
        &host,
        b"this is not a package".to_vec(),
        "not a Souk package",
    );
    refused(&host, Vec::new(), "module.yaml is missing");
}

#[test]
fn versions_are_immutable_and_re_adding_is_idempotent() {
    let host = Host::start(&[]);
    let original = package("membership", |m| m);
    let a = host.add_package(original.clone());
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.add_package(original);
    assert_eq!(a.status, 200, "{a:?}");
    let changed = package("membership", |m| {
        m.replace("Members, member numbers", "Changed description")
    });
    let a = host.add_package(changed);
    assert_eq!(a.status, 409, "{a:?}");
    assert!(a.detail().contains("immutable"), "{a:?}");
    let tenant_token = host.tenant("acme");
    let res = host
        .client
        .post(format!("{}/v1/modules", host.base))
        .bearer_auth(&tenant_token)
        .body(package("membership", |m| m))
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
}
