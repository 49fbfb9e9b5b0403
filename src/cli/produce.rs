//! `quill produce TOPIC`: one record per line of standard input.
//!
//! Every record read is accounted for on exit. Standard input is read on a thread of its own
//! and the main thread waits on it in short ticks, so SIGINT and SIGTERM are noticed however
//! quiet the input is: reading stops, records already sent get [`INTERRUPT_GRACE`] to be
//! acknowledged, and the summary line is printed before exiting with 128 + the signal number.
//! A watcher thread guarantees the bound even when the main thread is stuck in a call to the
//! client (a second signal ends the wait at once).

use std::collections::VecDeque;
use std::io::Read;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{exit_status, usage, BrokerArgs, EXIT_FAILED};
use quill_client::blocking::{DeliveryHandle, Producer};
use quill_client::{Acks, ClientError, ProducerConfig, ProducerRecord};

/// Deliveries waited for at most this far behind the line being read, so memory stays
/// bounded however long the input is.
const PENDING_DELIVERIES_MAX: usize = 10_000;
/// How long the main thread waits at a time before it looks for a signal again.
const TICK: Duration = Duration::from_millis(50);
/// After SIGINT or SIGTERM, how long records already sent may take to be acknowledged.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(2);
/// Beyond the grace, how long the signal watcher leaves the main thread to report before it
/// reports and exits itself.
const INTERRUPT_WATCHER_MARGIN: Duration = Duration::from_secs(1);
/// Bytes asked of standard input per read.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Blocks of standard input read ahead of the main thread.
const READ_AHEAD_CHUNKS: usize = 4;

#[derive(clap::Args, Debug)]
#[command(after_help = PRODUCE_HELP)]
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
    /// is acknowledged once durable on the partition's leader; all: once durable on a
    /// majority of its replicas (the same as leader with one replica).
    #[arg(long, value_enum, default_value_t = AcksArg::Leader)]
    pub acks: AcksArg,
    /// Print the summary line (records read, acknowledged, not acknowledged) also when every
    /// record was acknowledged.
    #[arg(short, long)]
    pub verbose: bool,
    /// Same as --request-timeout-ms: a record not acknowledged within MS ms fails
    #[arg(long, value_name = "MS", conflicts_with = "request_timeout_ms",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: Option<u64>,
}

const PRODUCE_HELP: &str = concat!(
    "\
On exit, unless every record was acknowledged (or with -v), a summary goes to stderr:
  quill: 1200 records read, 1000 acknowledged, 200 not acknowledged
With --acks none, records written to the broker count as sent, not acknowledged. On SIGINT
or SIGTERM, reading stops, records already sent get 2 s to be acknowledged (a second signal
ends the wait), the summary is printed and the exit status is 130 (SIGINT) or 143 (SIGTERM).
The exit status is not 0 when a record was not acknowledged.

",
    super::exit_status_help!()
);

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcksArg {
    None,
    Leader,
    All,
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

/// What became of the records read; shared with the signal watcher.
#[derive(Debug, Default)]
struct Tally {
    /// Records handed to the producer.
    read: AtomicU64,
    /// Acknowledged by the broker (acks leader) or written to it (acks none).
    delivered: AtomicU64,
    /// Whoever prints the summary first (main thread or watcher) sets this.
    reported: AtomicBool,
}

impl Tally {
    /// The summary line, e.g. `quill: 1200 records read, 1000 acknowledged, 200 not
    /// acknowledged`.
    fn summary(&self, acks: Acks) -> String {
        let read = self.read.load(Ordering::SeqCst);
        let delivered = self.delivered.load(Ordering::SeqCst);
        summary_line(acks, read, delivered)
    }

    /// Whether this caller is the one to print the summary (only one thread does).
    fn claim_report(&self) -> bool {
        !self.reported.swap(true, Ordering::SeqCst)
    }
}

/// See [`Tally::summary`].
pub fn summary_line(acks: Acks, read: u64, delivered: u64) -> String {
    let missing = read.saturating_sub(delivered);
    let records = if read == 1 { "record" } else { "records" };
    match acks {
        Acks::Leader | Acks::All => format!(
            "quill: {read} {records} read, {delivered} acknowledged, {missing} not acknowledged"
        ),
        // The broker never answers these: written is all the client can vouch for.
        Acks::None => format!(
            "quill: {read} {records} read, {delivered} sent (not acknowledged: --acks none), \
             {missing} not sent"
        ),
    }
}

/// SIGINT and SIGTERM, caught by a watcher thread from before the client connects.
struct Interrupts {
    /// The first signal received, 0 until then.
    signal: Arc<AtomicI32>,
}

impl Interrupts {
    /// Starts the watcher. After the first signal it gives the main thread
    /// [`INTERRUPT_GRACE`] plus a margin (or until a second signal) to report; then it prints
    /// the summary itself, if nobody has, and exits.
    fn watch(tally: Arc<Tally>, acks: Acks) -> std::io::Result<Interrupts> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let signal = Arc::new(AtomicI32::new(0));
        let seen = signal.clone();
        std::thread::Builder::new()
            .name("quill-signals".into())
            .spawn(move || {
                let Some(first) = signals.forever().next() else {
                    return;
                };
                seen.store(first, Ordering::SeqCst);
                // Nothing sent yet (still connecting, say): nothing to wait for, beyond a
                // couple of ticks for the main thread to notice and report itself.
                let wait = if tally.read.load(Ordering::SeqCst) == 0 {
                    2 * TICK
                } else {
                    INTERRUPT_GRACE + INTERRUPT_WATCHER_MARGIN
                };
                let deadline = Instant::now() + wait;
                while Instant::now() < deadline {
                    if signals.pending().next().is_some() {
                        break;
                    }
                    std::thread::sleep(TICK);
                }
                if tally.claim_report() {
                    eprintln!("quill: interrupted by {}", signal_name(first));
                    eprintln!("{}", tally.summary(acks));
                }
                std::process::exit(128 + first);
            })?;
        Ok(Interrupts { signal })
    }

    fn received(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Standard input in blocks, read on a thread of its own; the channel closes at the end.
fn read_stdin_in_background() -> Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::sync_channel(READ_AHEAD_CHUNKS);
    let spawned = std::thread::Builder::new()
        .name("quill-stdin".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            loop {
                let mut block = vec![0u8; READ_CHUNK_BYTES];
                match input.read(&mut block) {
                    Ok(0) => return,
                    Ok(n) => {
                        block.truncate(n);
                        if tx.send(Ok(block)).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        let (tx, rx) = mpsc::sync_channel(1);
        let _ = tx.send(Err(e));
        return rx;
    }
    rx
}

/// One run of the command: the producer, the deliveries waited for, the accounting.
struct Session {
    producer: Producer,
    topic: Arc<str>,
    partition: Option<u32>,
    tally: Arc<Tally>,
    pending: VecDeque<DeliveryHandle>,
    /// The first failure, as printed, and its exit status.
    first_error: Option<(String, u8)>,
}

impl Session {
    fn note_error(&mut self, e: &ClientError) {
        if self.first_error.is_none() {
            self.first_error = Some((e.to_string(), exit_status(e)));
        }
    }

    fn settle(&mut self, outcome: Result<quill_client::RecordMetadata, ClientError>) {
        match outcome {
            Ok(_) => {
                self.tally.delivered.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => self.note_error(&e),
        }
    }

    /// Takes in every outcome already known, oldest first.
    fn reap_ready(&mut self) {
        while let Some(outcome) = self
            .pending
            .front()
            .and_then(|h| h.wait_timeout(Duration::ZERO))
        {
            self.pending.pop_front();
            self.settle(outcome);
        }
    }

    /// Waits up to `limit` for the oldest pending outcome.
    fn reap_one(&mut self, limit: Duration) {
        if let Some(outcome) = self.pending.front().and_then(|h| h.wait_timeout(limit)) {
            self.pending.pop_front();
            self.settle(outcome);
        }
    }

    /// Sends one line as a record. False when nothing more can be sent.
    fn send_line(&mut self, line: &[u8], sep: Option<&[u8]>) -> bool {
        self.tally.read.fetch_add(1, Ordering::SeqCst);
        let (key, value) = split_line(line, sep);
        let mut record = ProducerRecord::new(self.topic.clone(), value);
        record.key = key;
        record.partition = self.partition;
        match self.producer.send(record) {
            Ok(handle) => {
                self.pending.push_back(handle);
                true
            }
            Err(e) => {
                // Refused before sending (unknown topic or partition, too large): the rest
                // would be refused too.
                self.note_error(&e);
                false
            }
        }
    }
}

/// Runs `quill produce ...`. Each line of stdin (its trailing `\n` removed; any other byte,
/// `\r` included, is kept) is one record; an empty line is a record with an empty value.
pub fn run(args: ProduceArgs) -> ExitCode {
    if args.key_separator.as_deref() == Some("") {
        return usage("--key-separator must not be empty");
    }
    let acks = match args.acks {
        AcksArg::None => Acks::None,
        AcksArg::Leader => Acks::Leader,
        AcksArg::All => Acks::All,
    };
    let tally = Arc::new(Tally::default());
    let interrupts = match Interrupts::watch(tally.clone(), acks) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("quill: cannot watch for signals: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let client = match args.broker.with_timeout_ms(args.timeout_ms).connect() {
        Ok(c) => c,
        Err(e) => return super::fail(&e),
    };
    let producer = match client.producer(ProducerConfig {
        acks,
        linger_ms: 5,
        // Leader changes are retried this long before a record counts as not acknowledged.
        delivery_timeout_ms: super::DELIVERY_TIMEOUT_MS_DEFAULT,
        ..ProducerConfig::default()
    }) {
        Ok(p) => p,
        Err(e) => return super::fail(&e),
    };
    let mut session = Session {
        producer,
        topic: Arc::from(args.topic.as_str()),
        partition: args.partition,
        tally: tally.clone(),
        pending: VecDeque::new(),
        first_error: None,
    };
    let sep = args.key_separator.as_deref().map(str::as_bytes);
    let input = read_stdin_in_background();
    // The part of the input after its last newline so far: the start of the next line.
    let mut carry: Vec<u8> = Vec::new();
    'reading: while interrupts.received().is_none() {
        session.reap_ready();
        while session.pending.len() > PENDING_DELIVERIES_MAX {
            if interrupts.received().is_some() {
                break 'reading;
            }
            session.reap_one(TICK);
        }
        let block = match input.recv_timeout(TICK) {
            Ok(Ok(block)) => block,
            Ok(Err(e)) => {
                session.first_error =
                    Some((format!("cannot read standard input: {e}"), EXIT_FAILED));
                break;
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                // A last line without a newline is a record too.
                if !carry.is_empty() {
                    let line = std::mem::take(&mut carry);
                    session.send_line(&line, sep);
                }
                break;
            }
        };
        let mut start = 0;
        for end in memchr_all(b'\n', &block) {
            let sent = if carry.is_empty() {
                session.send_line(&block[start..end], sep)
            } else {
                carry.extend_from_slice(&block[start..end]);
                let line = std::mem::take(&mut carry);
                session.send_line(&line, sep)
            };
            start = end + 1;
            if !sent || interrupts.received().is_some() {
                break 'reading;
            }
        }
        carry.extend_from_slice(&block[start..]);
    }
    // Wait for what was sent: for as long as it takes (the client's timeouts bound it), or
    // for the grace once a signal came.
    let mut deadline = interrupts
        .received()
        .map(|_| Instant::now() + INTERRUPT_GRACE);
    while !session.pending.is_empty() {
        if deadline.is_none() && interrupts.received().is_some() {
            deadline = Some(Instant::now() + INTERRUPT_GRACE);
        }
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(TICK),
                _ => break,
            },
            None => TICK,
        };
        session.reap_one(wait);
    }
    let signal = interrupts.received();
    let read = tally.read.load(Ordering::SeqCst);
    let delivered = tally.delivered.load(Ordering::SeqCst);
    let status = match (signal, &session.first_error) {
        (Some(s), _) => (128 + s) as u8,
        (None, Some((_, status))) => *status,
        (None, None) if delivered < read => EXIT_FAILED,
        (None, None) => 0,
    };
    if (status != 0 || args.verbose) && tally.claim_report() {
        if let Some((message, _)) = &session.first_error {
            eprintln!("quill: {message}");
        }
        if let Some(s) = signal {
            eprintln!("quill: interrupted by {}", signal_name(s));
        }
        eprintln!("{}", tally.summary(acks));
    }
    if signal.is_some() {
        // Records may still be outstanding: dropping the client would wait for them.
        std::process::exit(i32::from(status));
    }
    ExitCode::from(status)
}

/// Positions of every `byte` in `haystack`.
fn memchr_all(byte: u8, haystack: &[u8]) -> impl Iterator<Item = usize> + '_ {
    haystack
        .iter()
        .enumerate()
        .filter(move |(_, &b)| b == byte)
        .map(|(i, _)| i)
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

    #[test]
    fn the_summary_says_what_was_not_acknowledged() {
        assert_eq!(
            summary_line(Acks::Leader, 1200, 1000),
            "quill: 1200 records read, 1000 acknowledged, 200 not acknowledged"
        );
        assert_eq!(
            summary_line(Acks::Leader, 1, 0),
            "quill: 1 record read, 0 acknowledged, 1 not acknowledged"
        );
        assert_eq!(
            summary_line(Acks::None, 3, 3),
            "quill: 3 records read, 3 sent (not acknowledged: --acks none), 0 not sent"
        );
    }
}
