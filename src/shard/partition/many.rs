//! A fetch of several partitions as one request, with Kafka's Fetch semantics, so every protocol
//! adapter shares them: one wait for all partitions (bounded by `fetch_wait_ms_max`),
//! `min_bytes` counted across them, and one byte budget for the answer in which each partition
//! also keeps within its own limit, except that the first batch of the answer is always carried
//! whole (a batch larger than the limits must not stall a consumer).

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::super::error::PartitionError;
use super::service::PartitionService;
use super::types::{FetchSpec, Fetched};
use crate::local::Event;
use crate::record::BatchHeader;
use crate::types::{Offset, TopicPartition};

/// A read of several partitions sharing one wait and one byte budget.
#[derive(Clone, Debug)]
pub struct FetchMany {
    /// The partitions, in the order results come back.
    pub partitions: Vec<PartitionFetch>,
    /// How long to wait for `min_bytes` across all partitions (zero: answer at once).
    pub max_wait: Duration,
    /// Answer once the partitions together hold at least this many bytes, or one failed.
    pub min_bytes: usize,
    /// The answer as a whole carries at most this many bytes (first batch excepted).
    pub max_bytes: usize,
}

/// One partition of a [`FetchMany`].
#[derive(Clone, Debug)]
pub struct PartitionFetch {
    pub tp: TopicPartition,
    /// Where to start; `None`, a position before any log, is answered as out of range.
    pub offset: Option<Offset>,
    /// This partition's share of the answer at most (first batch of the answer excepted).
    pub max_bytes: usize,
}

impl PartitionService {
    /// Reads every partition of `req`, each on its owner and concurrently, waiting until
    /// `req.min_bytes` are there across them, one of them failed, or `req.max_wait` (bounded by
    /// `fetch_wait_ms_max`) passed; the answer holds at most `req.max_bytes` bounded by
    /// `fetch_bytes_max` (first batch excepted). Results mirror `req.partitions`.
    pub async fn fetch_many(&self, req: &FetchMany) -> Vec<Result<Fetched, PartitionError>> {
        let shard = self.shard();
        let wait_max = Duration::from_millis(u64::from(shard.config.limits.fetch_wait_ms_max));
        let wait = req.max_wait.min(wait_max);
        let deadline = Instant::now() + wait;
        // `fetch_bytes_max` bounds the whole answer, not only each partition's read.
        let bytes_max = shard.config.limits.fetch_bytes_max as usize;
        let capped;
        let req = if req.max_bytes > bytes_max {
            capped = FetchMany {
                max_bytes: bytes_max,
                ..req.clone()
            };
            &capped
        } else {
            req
        };
        let results = if req.partitions.len() == 1 {
            // One partition: its own long poll (with min_bytes) is the whole wait.
            self.read_all(req, wait, req.min_bytes).await
        } else {
            let mut results = self.read_all(req, Duration::ZERO, 0).await;
            // Until min_bytes are there across partitions or the deadline: wait for any
            // partition to get more data past what was read, then read them all again.
            while !enough(&results, req.min_bytes) && !shard.is_shutting_down() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                self.wait_for_any(req, &results, left).await;
                results = self.read_all(req, Duration::ZERO, 0).await;
            }
            results
        };
        within_budget(req, results)
    }

    /// Reads every partition once, concurrently, each waiting up to `wait` for `min_bytes`.
    async fn read_all(
        &self,
        req: &FetchMany,
        wait: Duration,
        min_bytes: usize,
    ) -> Vec<Result<Fetched, PartitionError>> {
        let tasks: Vec<_> = req
            .partitions
            .iter()
            .map(|p| {
                let svc = self.clone();
                let tp = p.tp.clone();
                let spec = FetchSpec {
                    offset: p.offset,
                    max_bytes: p.max_bytes.min(req.max_bytes),
                    max_wait: wait,
                    min_bytes,
                };
                glommio::spawn_local(async move { svc.fetch(tp, spec).await })
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(task.await);
        }
        out
    }

    /// Returns once any partition has data past what `results` read from it, or after `left`.
    async fn wait_for_any(
        &self,
        req: &FetchMany,
        results: &[Result<Fetched, PartitionError>],
        left: Duration,
    ) {
        let done = Rc::new(Event::new());
        let first = done.listen();
        let mut watchers: Vec<glommio::Task<()>> = Vec::new();
        for (p, r) in req.partitions.iter().zip(results) {
            let Ok(f) = r else { continue };
            let next = f
                .batches
                .last()
                .and_then(|b| BatchHeader::parse(b).ok())
                .and_then(|h| u64::try_from(h.last_offset() + 1).ok())
                .map(Offset)
                .or(p.offset);
            let svc = self.clone();
            let tp = p.tp.clone();
            let spec = FetchSpec {
                offset: next,
                max_bytes: 1,
                max_wait: left,
                min_bytes: 1,
            };
            let done = done.clone();
            watchers.push(glommio::spawn_local(async move {
                let _ = svc.fetch(tp, spec).await;
                done.notify();
            }));
        }
        // The first watcher to return wakes us; dropping the rest cancels them.
        futures_lite::future::or(first, glommio::timer::sleep(left)).await;
    }
}

/// Whether a fetch may answer: `min_bytes` are there, or a partition failed.
fn enough(results: &[Result<Fetched, PartitionError>], min_bytes: usize) -> bool {
    let mut bytes = 0usize;
    for r in results {
        match r {
            Ok(f) => bytes += f.bytes(),
            Err(_) => return true,
        }
    }
    bytes >= min_bytes
}

/// Cuts the batches read to the answer's byte budget and each partition's own limit, carrying
/// the answer's first batch whole.
fn within_budget(
    req: &FetchMany,
    results: Vec<Result<Fetched, PartitionError>>,
) -> Vec<Result<Fetched, PartitionError>> {
    let mut used = 0usize;
    let mut carried = false;
    req.partitions
        .iter()
        .zip(results)
        .map(|(p, r)| {
            r.map(|mut f| {
                let mut n = 0usize;
                let mut part_used = 0usize;
                for b in &f.batches {
                    let len = b.len();
                    if carried && (used + len > req.max_bytes || part_used + len > p.max_bytes) {
                        break;
                    }
                    used += len;
                    part_used += len;
                    carried = true;
                    n += 1;
                }
                f.batches.truncate(n);
                f
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn fetched(sizes: &[usize]) -> Result<Fetched, PartitionError> {
        Ok(Fetched {
            batches: sizes.iter().map(|&n| Bytes::from(vec![0u8; n])).collect(),
            ..Fetched::default()
        })
    }

    fn request(part_max: &[usize], max_bytes: usize) -> FetchMany {
        FetchMany {
            partitions: part_max
                .iter()
                .enumerate()
                .map(|(i, &m)| PartitionFetch {
                    tp: TopicPartition::new("t", i as u32),
                    offset: Some(Offset(0)),
                    max_bytes: m,
                })
                .collect(),
            max_wait: Duration::ZERO,
            min_bytes: 0,
            max_bytes,
        }
    }

    fn sizes(r: &[Result<Fetched, PartitionError>]) -> Vec<Vec<usize>> {
        r.iter()
            .map(|r| {
                r.as_ref()
                    .unwrap()
                    .batches
                    .iter()
                    .map(|b| b.len())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_first_batch_is_carried_whole_and_then_the_budgets_hold() {
        // The first batch is over both limits and still goes; nothing else fits after it.
        let req = request(&[10, 10], 10);
        let out = within_budget(&req, vec![fetched(&[50, 5]), fetched(&[5])]);
        assert_eq!(sizes(&out), vec![vec![50], vec![]]);
    }

    #[test]
    fn each_partition_keeps_to_its_own_limit_within_the_total() {
        let req = request(&[10, 100], 25);
        let out = within_budget(&req, vec![fetched(&[6, 6]), fetched(&[8, 8, 8])]);
        // Partition 0: 6, then 6 more would pass its 10. Partition 1: 8 + 8 = 16, total 22;
        // one more 8 would pass the total of 25.
        assert_eq!(sizes(&out), vec![vec![6], vec![8, 8]]);
    }

    #[test]
    fn errors_pass_through_and_answer_at_once() {
        let req = request(&[10, 10], 100);
        let err: Result<Fetched, PartitionError> =
            Err(PartitionError::ShuttingDown(crate::types::ShardId(0)));
        let out = within_budget(&req, vec![err.clone(), fetched(&[4])]);
        assert!(out[0].is_err());
        assert!(enough(&[err, fetched(&[])], 1_000));
        assert!(!enough(&[fetched(&[4]), fetched(&[5])], 10));
        assert!(enough(&[fetched(&[4]), fetched(&[6])], 10));
    }
}
