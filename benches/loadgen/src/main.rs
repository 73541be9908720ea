//! The load generator and setup driver of `scripts/bench` (see
//! BENCHMARKS.md). Three subcommands, each printing one JSON object on
//! stdout for the script to read:
//!
//! - `events` (goal P4): `POST /v1/tenants/{t}/usage-events` with one event
//!   per request from N connections (one thread each) for a while, every
//!   event with a key never sent before; writes the keys answered with a 2xx
//!   (acknowledged) to a file, so a crash check can prove each is counted.
//! - `setup` (goals P5, P6): creates tenants and a token for each through
//!   the API, then installs modules for each, from N concurrent clients; the
//!   two phases are timed separately.
//! - `first-ok` (goal P5): starts a command (`souk serve`) and polls a URL
//!   until the first 2xx: the time from the spawn to that answer.

mod http;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use serde_json::json;

use crate::http::Client;

#[derive(Parser)]
#[command(about = "Souk benchmark load generator (scripts/bench)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Usage events, one per request, each with a fresh idempotency key.
    Events(EventsArgs),
    /// Tenants, tokens and installs through the API, concurrently.
    Setup(SetupArgs),
    /// Spawns a command and times it until a URL first answers 2xx.
    FirstOk(FirstOkArgs),
}

#[derive(Parser)]
struct EventsArgs {
    /// The server, `http://127.0.0.1:PORT`.
    #[arg(long)]
    url: String,
    /// The tenant slug.
    #[arg(long)]
    tenant: String,
    /// A token of that tenant (or the operator's).
    #[arg(long)]
    token: String,
    /// The module of the meter.
    #[arg(long)]
    module: String,
    /// The meter.
    #[arg(long)]
    meter: String,
    /// Concurrent connections, one thread each.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds to send for.
    #[arg(long)]
    duration: f64,
    /// Keys are `{prefix}-{connection}-{sequence}`; use a new prefix per run.
    #[arg(long)]
    key_prefix: String,
    /// Where to write the acknowledged (2xx) keys, one a line.
    #[arg(long)]
    acked_out: Option<PathBuf>,
}

#[derive(Parser)]
struct SetupArgs {
    /// The server, `http://127.0.0.1:PORT`.
    #[arg(long)]
    url: String,
    /// The operator token.
    #[arg(long)]
    operator_token: String,
    /// How many tenants to create.
    #[arg(long)]
    tenants: usize,
    /// Number of the first tenant; slugs are `{prefix}{number:05}`.
    #[arg(long, default_value_t = 1)]
    first: usize,
    /// Slug prefix (a lowercase letter first).
    #[arg(long, default_value = "t")]
    prefix: String,
    /// Concurrent clients (threads), each with its own keep-alive connection.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Modules to install for each tenant, comma separated, in order.
    #[arg(long, value_delimiter = ',')]
    modules: Vec<String>,
    /// Appends `slug token` lines for the tenants created.
    #[arg(long)]
    tokens_out: Option<PathBuf>,
}

#[derive(Parser)]
struct FirstOkArgs {
    /// The server, `http://127.0.0.1:PORT`, as the command will listen.
    #[arg(long)]
    url: String,
    /// The path to poll with GET.
    #[arg(long)]
    path: String,
    /// Bearer token for the poll.
    #[arg(long)]
    token: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// The command's stdout and stderr go to this file.
    #[arg(long)]
    log: PathBuf,
    /// The command to start, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Events(args) => events(args),
        Cmd::Setup(args) => setup(args),
        Cmd::FirstOk(args) => first_ok(args),
    }
}

/// The `p`-quantile (0..=1) of sorted `values`, in milliseconds.
fn quantile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    f64::from(sorted_us[rank - 1]) / 1000.0
}

fn micros(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX)
}

#[derive(Default)]
struct EventsTally {
    acked: Vec<String>,
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    sent: u64,
    errors: u64,
    first_error: Option<String>,
    first_refusal: Option<String>,
}

fn events(args: EventsArgs) -> anyhow::Result<()> {
    Client::new(&args.url)?;
    let path = format!("/v1/tenants/{}/usage-events", args.tenant);
    let duration = Duration::from_secs_f64(args.duration);
    let barrier = Arc::new(Barrier::new(args.connections + 1));
    let args = Arc::new(args);
    let mut workers = Vec::new();
    for worker in 0..args.connections {
        let args = args.clone();
        let barrier = barrier.clone();
        let path = path.clone();
        workers.push(std::thread::spawn(move || {
            let mut client = Client::new(&args.url).expect("checked above");
            let mut tally = EventsTally::default();
            barrier.wait();
            let deadline = Instant::now() + duration;
            let mut sequence: u64 = 0;
            while Instant::now() < deadline {
                let key = format!("{}-{worker}-{sequence}", args.key_prefix);
                sequence += 1;
                let body = json!({
                    "module": args.module,
                    "meter": args.meter,
                    "amount": 1,
                    "idempotency_key": key,
                })
                .to_string();
                let started = Instant::now();
                tally.sent += 1;
                match client.request("POST", &path, Some(&args.token), Some(body.as_bytes())) {
                    Ok(response) => {
                        tally.latencies_us.push(micros(started));
                        *tally.statuses.entry(response.status).or_default() += 1;
                        if response.ok() {
                            tally.acked.push(key);
                        } else if tally.first_refusal.is_none() {
                            tally.first_refusal =
                                Some(format!("{}: {}", response.status, response.text()));
                        }
                    }
                    Err(error) => {
                        tally.errors += 1;
                        if tally.first_error.is_none() {
                            tally.first_error = Some(error.to_string());
                        }
                        // The server is gone (the crash check kills it):
                        // do not spin on refused connections.
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            tally
        }));
    }
    barrier.wait();
    let started = Instant::now();
    let mut total = EventsTally::default();
    for worker in workers {
        let tally = worker.join().expect("worker panicked");
        total.acked.extend(tally.acked);
        total.latencies_us.extend(tally.latencies_us);
        for (status, n) in tally.statuses {
            *total.statuses.entry(status).or_default() += n;
        }
        total.sent += tally.sent;
        total.errors += tally.errors;
        total.first_error = total.first_error.or(tally.first_error);
        total.first_refusal = total.first_refusal.or(tally.first_refusal);
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(path) = &args.acked_out {
        let mut out = BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        for key in &total.acked {
            writeln!(out, "{key}")?;
        }
        out.flush()?;
    }
    total.latencies_us.sort_unstable();
    let statuses: BTreeMap<String, u64> = total
        .statuses
        .iter()
        .map(|(s, n)| (s.to_string(), *n))
        .collect();
    println!(
        "{}",
        json!({
            "connections": args.connections,
            "elapsed_secs": elapsed,
            "sent": total.sent,
            "acked": total.acked.len(),
            "events_per_sec": total.acked.len() as f64 / elapsed,
            "statuses": statuses,
            "errors": total.errors,
            "first_error": total.first_error,
            "first_refusal": total.first_refusal,
            "p50_ms": quantile_ms(&total.latencies_us, 0.50),
            "p99_ms": quantile_ms(&total.latencies_us, 0.99),
        })
    );
    Ok(())
}

/// Errors of a phase: how many, and the first few described.
#[derive(Default)]
struct Failures {
    count: usize,
    examples: Vec<String>,
}

impl Failures {
    fn add(&mut self, what: String) {
        self.count += 1;
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }
}

/// Runs `work(client, index)` for every index in `0..count` on `concurrency`
/// threads that take the next index as they finish one; returns the
/// seconds it took, each call's latency in µs, and the failures.
fn fan_out<F>(
    url: &str,
    count: usize,
    concurrency: usize,
    work: F,
) -> anyhow::Result<(f64, Vec<u32>, Failures)>
where
    F: Fn(&mut Client, usize) -> Result<(), String> + Send + Sync + 'static,
{
    Client::new(url)?;
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Failures::default()));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let work = Arc::new(work);
    let started = Instant::now();
    let threads: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (next, failures, latencies, work) = (
                next.clone(),
                failures.clone(),
                latencies.clone(),
                work.clone(),
            );
            let url = url.to_owned();
            std::thread::spawn(move || {
                let mut client = Client::new(&url).expect("checked above");
                let mut mine = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        break;
                    }
                    let one = Instant::now();
                    if let Err(what) = work(&mut client, index) {
                        failures.lock().expect("not poisoned").add(what);
                    }
                    mine.push(micros(one));
                }
                latencies.lock().expect("not poisoned").extend(mine);
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("setup thread panicked");
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies = std::mem::take(&mut *latencies.lock().expect("not poisoned"));
    latencies.sort_unstable();
    let failures = std::mem::take(&mut *failures.lock().expect("not poisoned"));
    Ok((seconds, latencies, failures))
}

fn post(
    client: &mut Client,
    path: &str,
    token: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let response = client
        .request("POST", path, Some(token), Some(body.to_string().as_bytes()))
        .map_err(|e| format!("POST {path}: {e}"))?;
    if !response.ok() {
        return Err(format!(
            "POST {path}: {} {}",
            response.status,
            response.text()
        ));
    }
    serde_json::from_slice(&response.body)
        .map_err(|e| format!("POST {path}: answer is not JSON: {e}"))
}

fn setup(args: SetupArgs) -> anyhow::Result<()> {
    let slugs: Arc<Vec<String>> = Arc::new(
        (args.first..args.first + args.tenants)
            .map(|n| format!("{}{n:05}", args.prefix))
            .collect(),
    );
    let tokens: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![None; args.tenants]));

    // Phase 1: tenants and their tokens.
    let (create_secs, _, create_failures) = {
        let (slugs, tokens, operator) =
            (slugs.clone(), tokens.clone(), args.operator_token.clone());
        fan_out(
            &args.url,
            args.tenants,
            args.concurrency,
            move |client, i| {
                let slug = &slugs[i];
                post(
                    client,
                    "/v1/tenants",
                    &operator,
                    &json!({"slug": slug, "name": format!("Bench tenant {slug}")}),
                )?;
                let answer = post(
                    client,
                    &format!("/v1/tenants/{slug}/tokens"),
                    &operator,
                    &json!({"name": "bench"}),
                )?;
                let token = answer
                    .get("token")
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| format!("no token in the answer for {slug}: {answer}"))?;
                tokens.lock().expect("not poisoned")[i] = Some(token.to_owned());
                Ok(())
            },
        )?
    };
    let tokens: Arc<Vec<Option<String>>> =
        Arc::new(std::mem::take(&mut *tokens.lock().expect("not poisoned")));
    if let Some(path) = &args.tokens_out {
        let mut out = BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?,
        );
        for (slug, token) in slugs.iter().zip(tokens.iter()) {
            if let Some(token) = token {
                writeln!(out, "{slug} {token}")?;
            }
        }
        out.flush()?;
    }

    // Phase 2: installs, each tenant's modules in order, with its own token.
    let modules = Arc::new(args.modules.clone());
    let (install_secs, install_latencies, install_failures) = {
        let (slugs, tokens, modules) = (slugs.clone(), tokens.clone(), modules.clone());
        fan_out(
            &args.url,
            args.tenants,
            args.concurrency,
            move |client, i| {
                let slug = &slugs[i];
                let Some(token) = &tokens[i] else {
                    return Err(format!("{slug} has no token (its creation failed)"));
                };
                for module in modules.iter() {
                    post(
                        client,
                        &format!("/v1/tenants/{slug}/modules"),
                        token,
                        &json!({"module": module}),
                    )?;
                }
                Ok(())
            },
        )?
    };
    println!(
        "{}",
        json!({
            "tenants": args.tenants,
            "concurrency": args.concurrency,
            "modules": args.modules,
            "create_secs": create_secs,
            "create_errors": create_failures.count,
            "create_error_examples": create_failures.examples,
            "install_secs": install_secs,
            "installs": args.tenants * args.modules.len(),
            "install_errors": install_failures.count,
            "install_error_examples": install_failures.examples,
            "install_tenant_p50_ms": quantile_ms(&install_latencies, 0.50),
            "install_tenant_p99_ms": quantile_ms(&install_latencies, 0.99),
        })
    );
    Ok(())
}

fn first_ok(args: FirstOkArgs) -> anyhow::Result<()> {
    let mut client = Client::new(&args.url)?;
    let log =
        File::create(&args.log).with_context(|| format!("creating {}", args.log.display()))?;
    let (program, rest) = args.command.split_first().context("no command")?;
    let mut command = Command::new(program);
    command
        .args(rest)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let timeout = Duration::from_secs_f64(args.timeout);
    let mut attempts: u64 = 0;
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let outcome = loop {
        if let Some(status) = child.try_wait()? {
            break Err(anyhow::anyhow!(
                "{program} exited before answering: {status}"
            ));
        }
        if started.elapsed() > timeout {
            break Err(anyhow::anyhow!("no 2xx within {} s", args.timeout));
        }
        attempts += 1;
        match client.request("GET", &args.path, args.token.as_deref(), None) {
            Ok(response) if response.ok() => break Ok(started.elapsed()),
            Ok(response) => {
                *statuses.entry(response.status.to_string()).or_default() += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    // Close our connection (a graceful shutdown waits for open ones), then
    // stop the server as an operator would, and for good if it lingers.
    drop(client);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stop_deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait()?.is_none() {
        if Instant::now() > stop_deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = outcome?;
    println!(
        "{}",
        json!({
            "ms": elapsed.as_secs_f64() * 1000.0,
            "attempts": attempts,
            "non_2xx_before": statuses,
        })
    );
    if attempts == 0 {
        bail!("never polled");
    }
    Ok(())
}
