//! hubd's commands of their own, etcd's `etcd gateway` and `etcd grpc-proxy`:
//! a process that is no member, told apart by argv's first argument.

use std::ffi::OsString;
use std::future::Future;

/// Runs a command to the end of the process and returns its exit code:
/// argv as clap parses it into `P` (argv[0] "hubd" and argv[1] the command
/// make clap's "hubd <command> <rest>"), the log (etcd's JSON lines on
/// stderr, at the level the flags give), then `start` on a runtime of its
/// own. A failure goes to the log only, as hubd's own fatal errors.
pub fn run<P, F>(args: Vec<OsString>, level: impl FnOnce(&P) -> &'static str, start: impl FnOnce(P) -> F) -> i32
where
    P: clap::Parser,
    F: Future<Output = anyhow::Result<()>>,
{
    let parsed = match P::try_parse_from(args.into_iter().skip(1)) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    if let Err(e) = crate::log::init(level(&parsed), crate::log::Format::Json, &["default".to_string()]) {
        eprintln!("hubd: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hubd: cannot start the runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(start(parsed)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            1
        }
    }
}
