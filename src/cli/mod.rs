//! The client subcommands of the `quill` binary (`topic`, `produce`, `consume`, and
//! `cluster_status`, the `quill cluster status` command main.rs wires in), in the
//! spirit of kcat. Each is a clap argument struct and a `run` function returning the process
//! exit status; they use the blocking client ([`quill_client::blocking`]).
//!
//! Every command takes `-b/--broker HOST:PORT`, else the `QUILL_BROKER` environment variable,
//! else `127.0.0.1:9092`. Errors are one line on stderr, `quill: <what went wrong>`, and the
//! exit status says what kind ([`EXIT_STATUS_HELP`]).

pub mod cluster;
pub mod cluster_status;
pub mod consume;
pub mod logging;
pub mod produce;
pub mod topic;

use std::process::ExitCode;

use quill_client::blocking;
use quill_client::{ClientConfig, ClientError, DEFAULT_BOOTSTRAP};

pub use consume::ConsumeArgs;
pub use produce::ProduceArgs;
pub use topic::TopicArgs;

/// The environment variable naming the broker when `-b` is not given.
pub const BROKER_ENV: &str = "QUILL_BROKER";

/// Exit status 1: the broker refused or failed the operation.
pub const EXIT_FAILED: u8 = 1;
/// Exit status 2: bad command line (clap uses 2 for its own errors too).
pub const EXIT_USAGE: u8 = 2;
/// Exit status 3: the broker could not be reached.
pub const EXIT_UNREACHABLE: u8 = 3;

/// The text of [`EXIT_STATUS_HELP`], as a literal so commands can `concat!` their own notes
/// before it.
macro_rules! exit_status_help {
    () => {
        "\
Broker: -b/--broker HOST:PORT, else $QUILL_BROKER, else 127.0.0.1:9092. A broker that
does not answer fails the command after --request-timeout-ms (default 10 s; --timeout-ms
on topic and produce) or --connect-timeout-ms (default 5 s); timeouts are not retried.

Exit status:
  0  success
  1  the broker refused or failed the operation (unknown topic, topic exists,
     a record not acknowledged, ...)
  2  bad command line (unknown flag, bad value, bad broker address)
  3  the broker could not be reached (connection refused, timed out or lost),
     or the address is not a Quill broker's"
    };
}
pub(crate) use exit_status_help;

/// Shown at the end of each client command's `--help`.
pub const EXIT_STATUS_HELP: &str = exit_status_help!();

/// How long a command waits for a response before it gives up [`BrokerArgs::request_timeout_ms`].
/// A person is waiting: much shorter than the library's 30 s.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// How long a command waits for a TCP connection [`BrokerArgs::connect_timeout_ms`].
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// How long `quill produce` retries a record through leader changes (a person is waiting:
/// shorter than the library's 120 s).
pub const DELIVERY_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Retries of a failure that came back fast (connection refused, a retriable error code). A
/// timeout is never retried, so an unresponsive broker costs one timeout.
pub const RETRIES_MAX: u32 = 3;

/// The broker options shared by every client command.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct BrokerArgs {
    /// Broker address [default: $QUILL_BROKER, else 127.0.0.1:9092]
    #[arg(short = 'b', long = "broker", value_name = "HOST:PORT", global = true)]
    pub broker: Option<String>,
    /// Give up on a broker that has not answered a request within MS ms (not retried)
    /// [default: 10000]
    #[arg(long, value_name = "MS", global = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: Option<u64>,
    /// Give up on a broker that has not accepted the connection within MS ms
    /// [default: 5000]
    #[arg(long, value_name = "MS", global = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout_ms: Option<u64>,
}

impl BrokerArgs {
    /// The address to use: the flag, the environment, or the default.
    pub fn address(&self) -> String {
        if let Some(b) = &self.broker {
            return b.clone();
        }
        match std::env::var(BROKER_ENV) {
            Ok(b) if !b.trim().is_empty() => b.trim().to_string(),
            _ => DEFAULT_BOOTSTRAP.to_string(),
        }
    }

    /// The client settings of a command: short timeouts and few retries, since a person is
    /// waiting.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            retries_max: RETRIES_MAX,
            request_timeout_ms: self
                .request_timeout_ms
                .unwrap_or(REQUEST_TIMEOUT_MS_DEFAULT),
            connect_timeout_ms: self
                .connect_timeout_ms
                .unwrap_or(CONNECT_TIMEOUT_MS_DEFAULT),
            ..ClientConfig::new(self.address())
        }
    }

    /// A blocking client per [`BrokerArgs::client_config`].
    pub fn connect(&self) -> Result<blocking::Client, ClientError> {
        blocking::Client::connect(self.client_config())
    }

    /// These options with `--timeout-ms` (the request timeout on `topic` and `produce`), if
    /// given, as the request timeout.
    pub fn with_timeout_ms(&self, timeout_ms: Option<u64>) -> BrokerArgs {
        let mut args = self.clone();
        if timeout_ms.is_some() {
            args.request_timeout_ms = timeout_ms;
        }
        args
    }
}

/// The exit status for an error.
pub fn exit_status(e: &ClientError) -> u8 {
    match e {
        e if e.is_connection() => EXIT_UNREACHABLE,
        ClientError::BadAddress { .. } | ClientError::InvalidArgument { .. } => EXIT_USAGE,
        _ => EXIT_FAILED,
    }
}

/// Prints `quill: <error>` and returns its exit status.
pub fn fail(e: &ClientError) -> ExitCode {
    eprintln!("quill: {e}");
    ExitCode::from(exit_status(e))
}

/// Prints a usage error and returns exit status 2.
pub fn usage(message: &str) -> ExitCode {
    eprintln!("quill: {message}");
    ExitCode::from(EXIT_USAGE)
}

/// Whether an output error means the reader went away (`quill consume ... | head`).
pub(crate) fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}
