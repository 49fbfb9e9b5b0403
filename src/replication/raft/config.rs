//! [`ReplicaConfig`]: every knob of a replica core, with its unit in its name.

/// How a replica group behaves. Defaults: a 50 ms tick, elections after 10-19 ticks without a
/// leader (so a new leader in well under 2 s), heartbeats every 2 ticks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// How often the driver calls `Replica::tick`.
    pub tick_ms: u64,
    /// Ticks without hearing from a leader before a (pre-)election; raft-rs randomizes in
    /// `[election_ticks, 2 * election_ticks)`.
    pub election_ticks: usize,
    /// raft-rs draws each election timeout from `[election_ticks, election_ticks_max)` with the
    /// thread's RNG (not seedable); 0 means `2 * election_ticks`. The simulator sets
    /// `election_ticks + 1` (no randomness inside raft-rs, so a seed replays) and randomizes
    /// `election_ticks` per node and the tick times from its seed instead.
    pub election_ticks_max: usize,
    pub heartbeat_ticks: usize,
    /// raft-rs's `max_size_per_msg`: bytes of entries per append message.
    pub msg_bytes_max: u64,
    /// raft-rs's `max_inflight_msgs`: append messages in flight per follower.
    pub inflight_msgs_max: usize,
    /// The largest batch a proposal or a message entry may be.
    pub batch_bytes_max: usize,
    /// The window is compacted (the anchor moves) once it holds more than this many entries or
    /// bytes, down to half of them.
    pub window_entries_max: usize,
    pub window_bytes_max: u64,
    /// Bytes of recent entries kept in memory to send to followers without reading the log.
    pub cache_bytes_max: u64,
    /// Bytes per log read-back for a lagging follower (`Action::ReadLog`).
    pub read_bytes_max: u64,
    /// `max_bytes` of each `FetchLog` of a catch-up.
    pub catch_up_bytes_max: u32,
    /// A leader re-sends a snapshot to a follower that did not answer the last one after this
    /// many ticks (a lost snapshot message would otherwise stall it until the next election).
    pub snapshot_retry_ticks: usize,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            tick_ms: 50,
            election_ticks: 10,
            election_ticks_max: 0,
            heartbeat_ticks: 2,
            msg_bytes_max: 1 << 20,
            inflight_msgs_max: 256,
            batch_bytes_max: 1 << 20,
            window_entries_max: 4096,
            window_bytes_max: 8 << 20,
            cache_bytes_max: 8 << 20,
            read_bytes_max: 1 << 20,
            catch_up_bytes_max: 1 << 20,
            snapshot_retry_ticks: 40,
        }
    }
}

impl ReplicaConfig {
    /// The raft-rs configuration for replica `id`, whose state machine is applied up to
    /// `applied`.
    pub(crate) fn raft_config(&self, id: u64, applied: u64) -> raft::Config {
        raft::Config {
            id,
            election_tick: self.election_ticks,
            max_election_tick: self.election_ticks_max,
            heartbeat_tick: self.heartbeat_ticks,
            applied,
            max_size_per_msg: self.msg_bytes_max,
            max_inflight_msgs: self.inflight_msgs_max,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        }
    }
}
