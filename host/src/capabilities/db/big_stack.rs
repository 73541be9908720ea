//! Work that may recurse deeply runs on threads with stacks sized for it.
//!
//! A module's SQL becomes a syntax tree whose depth the module chooses:
//! `SELECT 1+1+...+1` with 30,000 terms (inside the 64 KiB statement cap) is
//! a left-deep tree 30,000 levels deep, and printing, visiting and dropping
//! it recurse once per level. Module calls run on wasmtime fibers with small
//! stacks, where that overflows and aborts the whole process. The parser's
//! own recursion limit bounds nesting it recurses on (parentheses,
//! sub-queries) but not operator chains, so the rewrite runs here instead:
//! a few threads with [`STACK_BYTES`] stacks (address space reserved, pages
//! touched only as used), fed through a channel, answering through a
//! oneshot so the caller's fiber yields instead of blocking its worker.
//! The tree never leaves these threads: only the rewritten text does.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};

/// Stack of each parsing thread: deep enough for the deepest tree a 64 KiB
/// statement can make (measured: about 1 KiB of stack per level while
/// printing), with a wide margin.
pub const STACK_BYTES: usize = 256 * 1024 * 1024;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The parsing threads failed to start, or a job panicked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the host's SQL parser is unavailable: {0}")]
pub struct Unavailable(String);

fn pool() -> Result<&'static Sender<Job>, Unavailable> {
    static POOL: OnceLock<Result<Sender<Job>, Unavailable>> = OnceLock::new();
    POOL.get_or_init(start).as_ref().map_err(Clone::clone)
}

fn start() -> Result<Sender<Job>, Unavailable> {
    let (tx, rx) = channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8);
    for i in 0..threads {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("souk-sql-parse-{i}"))
            .stack_size(STACK_BYTES)
            .spawn(move || serve(&rx))
            .map_err(|e| Unavailable(format!("could not start a parsing thread: {e}")))?;
    }
    Ok(tx)
}

fn serve(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// Runs `work` on a big-stack thread and awaits its result.
///
/// # Errors
/// [`Unavailable`] when the threads could not start or `work` panicked.
pub async fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Unavailable> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        let _ = tx.send(result);
    });
    pool()?
        .send(job)
        .map_err(|_| Unavailable("the parsing threads have stopped".into()))?;
    match rx.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(Unavailable("parsing the statement failed".into())),
        Err(_) => Err(Unavailable("the parsing thread went away".into())),
    }
}
