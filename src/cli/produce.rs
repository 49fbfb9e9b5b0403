//! `quill produce TOPIC`: one record per line of standard input.

use std::collections::VecDeque;
use std::io::BufRead;
use std::process::ExitCode;

use bytes::Bytes;

use super::{fail, usage, BrokerArgs, EXIT_STATUS_HELP};
use crate::client::blocking::DeliveryHandle;
use crate::client::{Acks, ClientError, ProducerConfig, ProducerRecord};

/// Deliveries waited for at most this far behind the line being read, so memory stays
/// bounded however long the input is.
const PENDING_DELIVERIES_MAX: usize = 10_000;

#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Topic to produce to.
    pub topic: String,
    /// Send every record to this partition [default: by key hash; records without a key are
    /// spread over all partitions]
    #[arg(short, long)]
    pub partition: Option<u32>,
    /// Split each line at the first SEP: the key before it, the value after. A line without
    /// SEP is a value with no key. Without this flag the whole line is the value.
    #[arg(short = 'K', long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// none: do not wait for the broker (records may be lost unnoticed); leader: each record
    /// is acknowledged once durable.
    #[arg(long, value_enum, default_value_t = AcksArg::Leader)]
    pub acks: AcksArg,
    /// Print the number of records produced to stderr.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcksArg {
    None,
    Leader,
}

/// Splits a line (without its newline) into key and value at the first `sep`.
pub fn split_line(line: &[u8], sep: Option<&[u8]>) -> (Option<Bytes>, Bytes) {
    if let Some(sep) = sep {
        if let Some(at) = line.windows(sep.len()).position(|w| w == sep) {
            return (
                Some(Bytes::copy_from_slice(&line[..at])),
                Bytes::copy_from_slice(&line[at + sep.len()..]),
            );
        }
    }
    (None, Bytes::copy_from_slice(line))
}

/// Runs `quill produce ...`. Each line of stdin (its trailing `\n` removed; any other byte,
/// `\r` included, is kept) is one record; an empty line is a record with an empty value.
pub fn run(args: ProduceArgs) -> ExitCode {
    if args.key_separator.as_deref() == Some("") {
        return usage("--key-separator must not be empty");
    }
    let client = match args.broker.connect() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let producer = match client.producer(ProducerConfig {
        acks: match args.acks {
            AcksArg::None => Acks::None,
            AcksArg::Leader => Acks::Leader,
        },
        linger_ms: 5,
        ..ProducerConfig::default()
    }) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let topic: std::sync::Arc<str> = std::sync::Arc::from(args.topic.as_str());
    let sep = args.key_separator.as_deref().map(str::as_bytes);
    let mut pending: VecDeque<DeliveryHandle> = VecDeque::new();
    let mut read = 0u64;
    let mut failed = 0u64;
    let mut first_error: Option<ClientError> = None;
    let mut note = |e: ClientError, failed: &mut u64| {
        *failed += 1;
        if first_error.is_none() {
            first_error = Some(e);
        }
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("quill: cannot read standard input: {e}");
                return ExitCode::from(super::EXIT_FAILED);
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        read += 1;
        let (key, value) = split_line(&line, sep);
        let mut record = ProducerRecord::new(topic.clone(), value);
        record.key = key;
        record.partition = args.partition;
        match producer.send(record) {
            Ok(handle) => pending.push_back(handle),
            Err(e) => {
                // Refused before sending (unknown topic or partition, too large): the rest
                // would be refused too.
                note(e, &mut failed);
                break;
            }
        }
        while pending.len() > PENDING_DELIVERIES_MAX {
            if let Err(e) = pending.pop_front().expect("not empty").wait() {
                note(e, &mut failed);
            }
        }
    }
    if let Err(e) = producer.flush() {
        note(e, &mut failed);
    }
    for handle in pending {
        if let Err(e) = handle.wait() {
            note(e, &mut failed);
        }
    }
    if let Some(e) = first_error {
        let code = fail(&e);
        eprintln!(
            "quill: {failed} of {read} records read were not acknowledged by topic '{topic}'"
        );
        return code;
    }
    if args.verbose {
        eprintln!("produced {read} records to topic '{topic}'");
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_separator() {
        assert_eq!(
            split_line(b"k:v:w", Some(b":")),
            (Some(Bytes::from_static(b"k")), Bytes::from_static(b"v:w"))
        );
        assert_eq!(
            split_line(b"k::v", Some(b"::")),
            (Some(Bytes::from_static(b"k")), Bytes::from_static(b"v"))
        );
        assert_eq!(
            split_line(b"novalue", Some(b":")),
            (None, Bytes::from_static(b"novalue"))
        );
        assert_eq!(split_line(b"a:b", None), (None, Bytes::from_static(b"a:b")));
        assert_eq!(
            split_line(b":v", Some(b":")),
            (Some(Bytes::new()), Bytes::from_static(b"v"))
        );
    }
}
