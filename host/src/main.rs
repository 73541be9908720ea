//! The `souk` binary. See [`souk_host::cli`].

fn main() -> std::process::ExitCode {
    souk_host::cli::main()
}
