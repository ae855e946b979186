//! hubctl: an etcdctl (v3, 3.4) work-alike for hub and for etcd.
//!
//! Place in the system: outside it. hubctl is an ordinary client of the etcd
//! v3 gRPC API (`hub_proto`'s generated clients) and has no privileged path
//! into hubd; everything it does, it does against etcd as well. Its contract is
//! etcdctl's: the same command names, flags, `ETCDCTL_*` variables, output
//! text (`-w simple|json|fields|table|protobuf`) and exit codes, so scripts
//! written for etcdctl keep working. `HUBCTL_*` variables work like `ETCDCTL_*`.
//!
//! Modules:
//! - [`flags`]: the command line, global flags and their environment variables
//! - [`commands`]: one module per command group (kv, txn, watch, lease, ...)
//! - [`client`]: endpoints, TLS and timeouts of the gRPC connections
//! - [`output`]: the printers, one module per `-w` format
//! - [`gofmt`]: the Go formatting rules etcdctl's text is made of
//! - [`error`]: `Error: ...` lines and etcdctl's exit codes

mod client;
mod commands;
mod error;
mod flags;
mod gofmt;
mod output;

use std::error::Error as _;
use std::io::Write;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};

use error::{CtlError, ExitCode};
use flags::{Cli, Environment};

fn main() {
    let code = match run() {
        Ok(()) => 0,
        Err(e) => {
            if let Some(message) = &e.message {
                eprintln!("Error: {message}");
            }
            e.code as i32
        }
    };
    std::process::exit(code);
}

fn run() -> Result<(), CtlError> {
    let cli = match parse_command_line() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let (opts, warnings) = flags::resolve(cli.global, &Environment::from_process())?;
    for warning in warnings {
        eprintln!("hubctl: {warning}");
    }
    if opts.debug {
        eprintln!("ETCDCTL_ENDPOINTS=[{}]", opts.endpoints.join(","));
        eprintln!("ETCDCTL_DIAL_TIMEOUT={}", gofmt::duration(opts.dial_timeout));
        eprintln!("ETCDCTL_COMMAND_TIMEOUT={}", gofmt::duration(opts.command_timeout));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CtlError::error(format!("cannot start the runtime: {e}")))?;
    let ctx = commands::Ctx::new(opts);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = runtime.block_on(commands::run(cli.command, &ctx, &mut out));
    out.flush()?;
    result
}

/// Parses the command line; a flag given twice keeps its last value, as pflag does.
fn parse_command_line() -> Result<Cli, clap::Error> {
    fn last_wins(command: clap::Command) -> clap::Command {
        command.args_override_self(true).mut_subcommands(last_wins)
    }
    let matches = last_wins(Cli::command()).try_get_matches()?;
    Cli::from_arg_matches(&matches)
}

/// Help goes to stdout with exit 0; other mistakes read as pflag/cobra word them.
fn usage_error(e: clap::Error) -> Result<(), CtlError> {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::DisplayVersion => {
            write!(std::io::stdout(), "{}", e.render())?;
            Ok(())
        }
        ErrorKind::UnknownArgument => {
            let arg = context_string(&e, ContextKind::InvalidArg).unwrap_or_default();
            let message = match arg.strip_prefix("--") {
                Some(long) => format!("unknown flag: --{}", long.split('=').next().unwrap_or(long)),
                None => {
                    let short = arg.trim_start_matches('-');
                    format!("unknown shorthand flag: '{}' in {arg}", short.chars().next().unwrap_or('?'))
                }
            };
            Err(CtlError::error(message))
        }
        ErrorKind::InvalidSubcommand => {
            let name = context_string(&e, ContextKind::InvalidSubcommand).unwrap_or_default();
            Err(CtlError::error(format!("unknown command \"{name}\" for \"hubctl\"")))
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let arg = context_string(&e, ContextKind::InvalidArg).unwrap_or_default();
            let value = context_string(&e, ContextKind::InvalidValue).unwrap_or_default();
            let flag = arg.split([' ', '=', '<', '[']).next().unwrap_or(&arg).to_string();
            let why = e.source().map(|s| s.to_string()).unwrap_or_else(|| first_line(&e.to_string()));
            Err(CtlError::error(format!("invalid argument \"{value}\" for \"{flag}\" flag: {why}")))
        }
        _ => Err(CtlError::new(ExitCode::Error, first_line(&e.to_string()))),
    }
}

fn context_string(e: &clap::Error, kind: ContextKind) -> Option<String> {
    match e.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) => v.first().cloned(),
        other => Some(other.to_string()),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string()
}
