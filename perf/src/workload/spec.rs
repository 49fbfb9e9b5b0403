//! A workload file (`perf/workloads/*.toml`), in the spirit of the OpenMessaging Benchmark's
//! workload and driver files merged into one.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Context, PerfError, Result};

/// One workload. Unknown keys are errors so a typo does not pass silently.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    pub name: String,
    pub topics: u32,
    pub partitions_per_topic: u32,
    /// Value size of every record, in bytes; the first 8 carry the send time.
    pub message_bytes: usize,
    /// Producer tasks in total, spread over the harness executors. Producer `p` writes topic
    /// `p % topics`, its partitions chosen by the client's sticky partitioner.
    pub producers: u32,
    /// Consumer tasks in total; the topics' partitions are dealt out round robin among them.
    pub consumers: u32,
    /// Target rate of all producers together; 0 = as fast as possible.
    pub rate_msgs_per_s: u64,
    pub warmup_s: u64,
    pub duration_s: u64,
    /// `leader` or `none`.
    pub acks: String,
    /// Topic durability: `sync` (fdatasync before ack) or `interval`.
    #[serde(default = "default_durability")]
    pub durability: String,
    pub linger_ms: u64,
    pub batch_bytes: usize,
    /// Producer requests in flight per partition (client default 1).
    #[serde(default)]
    pub partition_inflight_requests_max: Option<u32>,
    /// Producer memory for unacknowledged batches (client default 32 MiB).
    #[serde(default)]
    pub buffer_bytes_max: Option<usize>,
    /// Most record bytes per partition in one fetch (client default 1 MiB).
    #[serde(default)]
    pub partition_fetch_bytes_max: Option<u32>,
    /// Replicas per partition of the topics the run creates; 0 (the default) leaves it to
    /// the broker (`replication.default_replication_factor`).
    #[serde(default)]
    pub replication_factor: u16,
}

fn default_durability() -> String {
    "sync".to_string()
}

/// Smallest value that holds the embedded send timestamp.
pub const MESSAGE_BYTES_MIN: usize = 8;

impl WorkloadSpec {
    pub fn load(path: &Path) -> Result<WorkloadSpec> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read workload {}", path.display()))?;
        let spec: WorkloadSpec =
            toml::from_str(&text).with_context(|| format!("parse workload {}", path.display()))?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(PerfError::msg(format!("workload {}: {m}", self.name)));
        if self.topics == 0 || self.partitions_per_topic == 0 {
            return bad("topics and partitions_per_topic must be at least 1");
        }
        if self.producers == 0 {
            return bad("producers must be at least 1");
        }
        if self.message_bytes < MESSAGE_BYTES_MIN {
            return bad("message_bytes must be at least 8 (the embedded timestamp)");
        }
        if self.duration_s == 0 {
            return bad("duration_s must be at least 1");
        }
        self.acks()?;
        self.durability()?;
        Ok(())
    }

    pub fn acks(&self) -> Result<quill_client::Acks> {
        match self.acks.as_str() {
            "leader" => Ok(quill_client::Acks::Leader),
            "all" => Ok(quill_client::Acks::All),
            "none" => Ok(quill_client::Acks::None),
            other => Err(PerfError::msg(format!(
                "acks must be \"leader\", \"all\" or \"none\", not {other:?}"
            ))),
        }
    }

    pub fn durability(&self) -> Result<quill_client::Durability> {
        match self.durability.as_str() {
            "sync" => Ok(quill_client::Durability::Sync),
            "interval" => Ok(quill_client::Durability::Interval),
            other => Err(PerfError::msg(format!(
                "durability must be \"sync\" or \"interval\", not {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_workloads_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                WorkloadSpec::load(&p).unwrap();
                n += 1;
            }
        }
        assert!(n >= 3);
    }
}
