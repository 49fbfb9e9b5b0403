//! `quill consume TOPIC`: prints records as text or JSON lines.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::{fail, is_broken_pipe, usage, BrokerArgs, EXIT_STATUS_HELP};
use quill_client::blocking;
use quill_client::{AutoReset, ClientError, ConsumedRecord, ConsumerConfig, StartOffset};

/// The longest one poll waits, so `--timeout-ms` and `--count` are checked regularly.
const POLL_MS_MAX: u64 = 500;

#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Topic to consume.
    pub topic: String,
    /// Read only this partition [default: all]
    #[arg(short, long)]
    pub partition: Option<u32>,
    /// Start at the oldest record still stored [default: start after the newest record]
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Start at offset N. With --partition, in that partition, and an N outside its log is
    /// an error. Without, in every partition (as kcat's -o), where a partition whose log does
    /// not hold N starts at the nearer end of its log instead (its first offset if N is
    /// below it, its end if N is past it), with a note on stderr.
    #[arg(long, value_name = "N")]
    pub offset: Option<i64>,
    /// Exit after printing N records.
    #[arg(short = 'c', long, value_name = "N")]
    pub count: Option<u64>,
    /// Exit after T ms without a new record, as kafka-console-consumer's --timeout-ms (the
    /// broker's request timeout is --request-timeout-ms) [default: wait for records forever]
    #[arg(long, value_name = "T")]
    pub timeout_ms: Option<u64>,
    /// text: each value on its own line (raw bytes; a null value prints an empty line).
    /// json: one object per line: {"topic","partition","offset","timestamp","key","value",
    /// "headers"}; key and value are JSON strings when they are UTF-8, null when null, and
    /// {"base64": "..."} (standard alphabet, padded) otherwise; headers is a list of
    /// [key, value] pairs encoded the same way.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// In text format, print the key and SEP before each value.
    #[arg(short = 'K', long, value_name = "SEP")]
    pub key_separator: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 section 4).
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Bytes as JSON: a string when UTF-8, `null` for `None`, else `{"base64": "..."}`.
pub fn json_bytes(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "null".to_string(),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => serde_json::to_string(s).expect("a string serializes"),
            Err(_) => format!("{{\"base64\":\"{}\"}}", base64(b)),
        },
    }
}

/// One record as a JSON object on one line.
pub fn json_line(r: &ConsumedRecord) -> String {
    let headers: Vec<String> = r
        .headers
        .iter()
        .map(|h| {
            format!(
                "[{},{}]",
                json_bytes(Some(h.key.as_bytes())),
                json_bytes(h.value.as_deref())
            )
        })
        .collect();
    format!(
        "{{\"topic\":{},\"partition\":{},\"offset\":{},\"timestamp\":{},\"key\":{},\"value\":{},\"headers\":[{}]}}",
        json_bytes(Some(r.topic.as_bytes())),
        r.partition,
        r.offset,
        r.timestamp_ms,
        json_bytes(r.key.as_deref()),
        json_bytes(r.value.as_deref()),
        headers.join(",")
    )
}

/// Where a partition whose log is `[log_start, end)` starts for `--offset N` without
/// `--partition`: N if the log holds it (or N is its end, the next offset), else the nearer end
/// of the log, with the note to print.
pub fn offset_or_nearest(
    offset: i64,
    log_start: i64,
    end: i64,
    topic: &str,
    partition: u32,
) -> (i64, Option<String>) {
    if (log_start..=end).contains(&offset) {
        return (offset, None);
    }
    let (at, where_) = if offset < log_start {
        (log_start, "before the start")
    } else {
        (end, "past the end")
    };
    let holds = if end <= log_start {
        "it is empty".to_string()
    } else {
        format!("it holds offsets {log_start} to {}", end - 1)
    };
    let note =
        format!("quill: offset {offset} is {where_} of {topic}-{partition} ({holds}): reading it from offset {at}");
    (at, Some(note))
}

/// `--offset N` on every partition of `topic` (kcat's `-o N`): a partition whose log does
/// not hold N starts at the nearer end of it, with a note on stderr, rather than failing the
/// whole command because one partition is empty or shorter.
fn assign_offset_everywhere(
    client: &blocking::Client,
    consumer: &blocking::Consumer,
    topic: &str,
    offset: i64,
) -> Result<(), ClientError> {
    let description = client.admin().describe_topic(topic)?;
    for p in &description.partitions {
        let start = if p.error_code.is_none() {
            let (at, note) = offset_or_nearest(
                offset,
                p.log_start_offset,
                p.high_watermark,
                topic,
                p.partition,
            );
            if let Some(note) = note {
                eprintln!("{note}");
            }
            at
        } else {
            // Its fetch will report what is wrong with it.
            offset
        };
        consumer.assign(topic, Some(vec![p.partition]), StartOffset::Offset(start))?;
    }
    Ok(())
}

/// Runs `quill consume ...`.
pub fn run(args: ConsumeArgs) -> ExitCode {
    if args.offset.is_some_and(|o| o < 0) {
        return usage("--offset must be at least 0");
    }
    let start = match (args.from_beginning, args.offset) {
        (_, Some(offset)) => StartOffset::Offset(offset),
        (true, None) => StartOffset::Earliest,
        (false, None) => StartOffset::Latest,
    };
    let client = match args.broker.connect() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let consumer = match client.consumer(ConsumerConfig {
        // An explicit offset outside the log is reported, not silently moved.
        auto_reset: if args.offset.is_some() {
            AutoReset::Error
        } else {
            AutoReset::Earliest
        },
        ..ConsumerConfig::default()
    }) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let assigned = match (args.offset, args.partition) {
        (Some(offset), None) => assign_offset_everywhere(&client, &consumer, &args.topic, offset),
        _ => consumer.assign(&args.topic, args.partition.map(|p| vec![p]), start),
    };
    if let Err(e) = assigned {
        return fail(&e);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let inactivity = args.timeout_ms.map(Duration::from_millis);
    let mut last_record = Instant::now();
    let mut printed = 0u64;
    // Damaged ranges skipped: noted on stderr as they come, and the exit status says so.
    let mut skipped = 0u64;
    let sep = args.key_separator.as_deref().map(str::as_bytes);
    loop {
        if args.count.is_some_and(|c| printed >= c) {
            break;
        }
        let mut wait = Duration::from_millis(POLL_MS_MAX);
        if let Some(limit) = inactivity {
            let left = limit.saturating_sub(last_record.elapsed());
            if left.is_zero() {
                break;
            }
            wait = wait.min(left);
        }
        let records = match consumer.poll(wait) {
            Ok(r) => r,
            Err(e @ quill_client::ClientError::DamagedRange { .. }) => {
                let _ = out.flush();
                eprintln!("quill: {e}");
                skipped += 1;
                continue;
            }
            Err(e) => {
                let _ = out.flush();
                return fail(&e);
            }
        };
        if !records.is_empty() {
            last_record = Instant::now();
        }
        for r in &records {
            if args.count.is_some_and(|c| printed >= c) {
                break;
            }
            let written = match args.format {
                Format::Text => (|| {
                    if let Some(sep) = sep {
                        out.write_all(r.key.as_deref().unwrap_or_default())?;
                        out.write_all(sep)?;
                    }
                    out.write_all(r.value.as_deref().unwrap_or_default())?;
                    out.write_all(b"\n")
                })(),
                Format::Json => writeln!(out, "{}", json_line(r)),
            };
            if let Err(e) = written {
                if is_broken_pipe(&e) {
                    return ExitCode::SUCCESS;
                }
                eprintln!("quill: cannot write to standard output: {e}");
                return ExitCode::from(super::EXIT_FAILED);
            }
            printed += 1;
        }
        if let Err(e) = out.flush() {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("quill: cannot write to standard output: {e}");
            return ExitCode::from(super::EXIT_FAILED);
        }
    }
    if skipped > 0 {
        eprintln!("quill: {skipped} damaged range(s) skipped: their records were not printed");
        return ExitCode::from(super::EXIT_FAILED);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn an_offset_outside_a_log_moves_to_its_nearer_end() {
        assert_eq!(offset_or_nearest(3, 0, 5, "t", 0), (3, None));
        assert_eq!(
            offset_or_nearest(5, 0, 5, "t", 0),
            (5, None),
            "the end is valid"
        );
        let note = |s: &str| Some(s.to_string());
        assert_eq!(
            offset_or_nearest(3, 0, 2, "t", 1),
            (
                2,
                note("quill: offset 3 is past the end of t-1 (it holds offsets 0 to 1): reading it from offset 2")
            )
        );
        assert_eq!(
            offset_or_nearest(3, 0, 0, "t", 2),
            (
                0,
                note("quill: offset 3 is past the end of t-2 (it is empty): reading it from offset 0")
            )
        );
        assert_eq!(
            offset_or_nearest(3, 10, 12, "t", 0),
            (
                10,
                note("quill: offset 3 is before the start of t-0 (it holds offsets 10 to 11): reading it from offset 10")
            )
        );
    }

    #[test]
    fn json_bytes_are_strings_null_or_base64() {
        assert_eq!(json_bytes(None), "null");
        assert_eq!(json_bytes(Some(b"a\"b\n")), "\"a\\\"b\\n\"");
        assert_eq!(json_bytes(Some(&[0xff, 0x00])), "{\"base64\":\"/wA=\"}");
    }
}
