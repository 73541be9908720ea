//! Lifecycle hooks with `files` and `jobs` through the real binary:
//! `hooks-probe`'s install hook stores a seed file and queues a first job,
//! both kept with the install's commit; its uninstall hook may do neither.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::Host;

const MODULE: &str = "hooks-probe";

fn jobs(host: &Host, token: &str) -> Vec<Value> {
    let a = host.get("/v1/tenants/acme/jobs", token);
    assert_eq!(a.status, 200, "{a:?}");
    a.body["jobs"].as_array().expect("jobs").clone()
}

#[test]
fn an_install_hook_stores_a_seed_file_and_queues_a_first_job_and_uninstall_may_do_neither() {
    let host = Host::start(&[MODULE]);
    let token = host.tenant_with("acme", MODULE);

    let a = host.get(&format!("/t/acme/m/{MODULE}/files"), &token);
    assert_eq!(a.status, 200, "{a:?}");
    let files = a.body["files"].as_array().expect("files");
    assert_eq!(files.len(), 1, "{a:?}");
    assert_eq!(files[0]["name"], "seed.pdf", "{a:?}");
    assert_eq!(files[0]["content_type"], "application/pdf", "{a:?}");

    let start = Instant::now();
    let job = loop {
        let all = jobs(&host, &token);
        assert_eq!(all.len(), 1, "the install hook queued one job: {all:?}");
        if all[0]["status"] == "succeeded" {
            break all[0].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the first job did not run: {all:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(job["name"], "welcome");
    assert_eq!(job["module"], MODULE);
    assert_eq!(job["result"], json!({"welcomed": true}));

    // The uninstall hook refuses if it could store a file or queue a job.
    let a = host.delete(&format!("/v1/tenants/acme/modules/{MODULE}"), &token);
    assert_eq!(a.status, 200, "uninstall: {a:?}");
    assert_eq!(jobs(&host, &token).len(), 1);
}
