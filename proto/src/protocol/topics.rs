//! Topic administration: CreateTopic (key 2), DeleteTopic (key 3), ListTopics (key 4).
//! CreateTopic version 1 adds `replication_factor` at the end of the body.

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::{put_array_len, put_string, Reader, WireError, STRING_BYTES_MIN};

/// Longest topic name, in bytes (Kafka's limit, so names carry over).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Whether `name` is a valid topic name: 1 to [`TOPIC_NAME_BYTES_MAX`] bytes of
/// `[a-zA-Z0-9._-]`, and not `.` or `..` (they would name directories). Brokers answer
/// `InvalidTopicName` otherwise.
pub fn is_valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= TOPIC_NAME_BYTES_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Wire value of a setting left to the broker's default.
const SETTING_DEFAULT: i64 = -2;
/// Wire value of "no limit" for a retention setting.
const RETENTION_FOREVER: i64 = -1;
/// Wire value of a durability left to the broker's default.
const DURABILITY_DEFAULT: i8 = -2;

/// A retention limit, by time (`retention_ms`) or by size (`retention_bytes`).
///
/// Wire: an `i64`, -2 for [`Retention::Default`], -1 for [`Retention::Forever`], else the limit
/// (0 or more). Any other negative value is refused with `InvalidConfig`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// The broker's configured default.
    Default,
    /// Keep everything: no limit of this kind.
    Forever,
    /// Delete whole segments past this many milliseconds or bytes. At most `i64::MAX`.
    Limit(u64),
}

/// When a produce with `acks = 1` is acknowledged.
///
/// Wire: an `i8`, 0 for [`Durability::Sync`], 1 for [`Durability::Interval`]; -2 (the broker's
/// default) is `None` in [`CreateTopicRequest::durability`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i8)]
pub enum Durability {
    /// After the batch is on disk (`fdatasync`).
    Sync = 0,
    /// After the batch is written; the log is synced every `flush_ms`.
    Interval = 1,
}

/// Creates a topic. Every setting but `name` and `partitions` may be left to the broker's default:
/// `None` (wire: -2) for the optional ones, [`Retention::Default`] for the retentions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateTopicRequest {
    /// The version the request goes as: 0, or 1 to carry `replication_factor`.
    pub version: u16,
    pub name: String,
    pub partitions: u32,
    pub retention_ms: Retention,
    pub retention_bytes: Retention,
    /// Size at which a segment is rolled. At most `i64::MAX`.
    pub segment_bytes: Option<u64>,
    /// Age at which a segment is rolled. At most `i64::MAX`.
    pub segment_ms: Option<u64>,
    pub durability: Option<Durability>,
    /// Longest time between two syncs under [`Durability::Interval`]. At most `i64::MAX`.
    pub flush_ms: Option<u64>,
    /// Version 1: how many nodes hold a replica of each partition, the leader included; 0 for
    /// the broker's default (and in version 0). More than the live nodes is refused with
    /// `INVALID_REPLICATION_FACTOR`.
    pub replication_factor: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteTopicRequest {
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListTopicsResponse {
    pub topics: Vec<TopicListing>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicListing {
    pub name: String,
    pub partitions: u32,
}

/// Empty `name`, `partitions`.
const TOPIC_LISTING_BYTES_MIN: usize = STRING_BYTES_MIN + 4;

fn setting_to_wire(value: u64) -> i64 {
    i64::try_from(value).expect("topic setting over i64::MAX")
}

impl Retention {
    fn to_wire(self) -> i64 {
        match self {
            Retention::Default => SETTING_DEFAULT,
            Retention::Forever => RETENTION_FOREVER,
            Retention::Limit(limit) => setting_to_wire(limit),
        }
    }

    fn decode(r: &mut Reader<BytesMut>, field: &'static str) -> Result<Self, WireError> {
        let at = r.position();
        match r.i64(field)? {
            SETTING_DEFAULT => Ok(Retention::Default),
            RETENTION_FOREVER => Ok(Retention::Forever),
            value if value >= 0 => Ok(Retention::Limit(value as u64)),
            value => Err(WireError::InvalidConfig { field, at, value }),
        }
    }
}

fn optional_to_wire(value: Option<u64>) -> i64 {
    value.map_or(SETTING_DEFAULT, setting_to_wire)
}

fn decode_optional(
    r: &mut Reader<BytesMut>,
    field: &'static str,
) -> Result<Option<u64>, WireError> {
    let at = r.position();
    match r.i64(field)? {
        SETTING_DEFAULT => Ok(None),
        value if value >= 0 => Ok(Some(value as u64)),
        value => Err(WireError::InvalidConfig { field, at, value }),
    }
}

impl CreateTopicRequest {
    /// A request for `partitions` partitions with every setting at the broker's default.
    pub fn with_defaults(name: impl Into<String>, partitions: u32) -> Self {
        CreateTopicRequest {
            version: 0,
            name: name.into(),
            partitions,
            retention_ms: Retention::Default,
            retention_bytes: Retention::Default,
            segment_bytes: None,
            segment_ms: None,
            durability: None,
            flush_ms: None,
            replication_factor: 0,
        }
    }

    /// The same request with `replication_factor` (0: the broker's default), as version 1.
    pub fn with_replication_factor(mut self, replication_factor: u16) -> Self {
        self.version = 1;
        self.replication_factor = replication_factor;
        self
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_string(out, &self.name);
        out.put_u32(self.partitions);
        out.put_i64(self.retention_ms.to_wire());
        out.put_i64(self.retention_bytes.to_wire());
        out.put_i64(optional_to_wire(self.segment_bytes));
        out.put_i64(optional_to_wire(self.segment_ms));
        out.put_i8(self.durability.map_or(DURABILITY_DEFAULT, |d| d as i8));
        out.put_i64(optional_to_wire(self.flush_ms));
        if self.version >= 1 {
            out.put_u16(self.replication_factor);
        }
    }

    /// Decodes the body of a request of `version` (0 or 1).
    pub(super) fn decode(r: &mut Reader<BytesMut>, version: u16) -> Result<Self, WireError> {
        let name = r.string("name")?;
        let partitions = r.u32("partitions")?;
        let retention_ms = Retention::decode(r, "retention_ms")?;
        let retention_bytes = Retention::decode(r, "retention_bytes")?;
        let segment_bytes = decode_optional(r, "segment_bytes")?;
        let segment_ms = decode_optional(r, "segment_ms")?;
        let at = r.position();
        let durability = match r.i8("durability")? {
            DURABILITY_DEFAULT => None,
            0 => Some(Durability::Sync),
            1 => Some(Durability::Interval),
            value => {
                return Err(WireError::InvalidConfig {
                    field: "durability",
                    at,
                    value: i64::from(value),
                })
            }
        };
        let flush_ms = decode_optional(r, "flush_ms")?;
        let replication_factor = if version >= 1 {
            r.u16("replication_factor")?
        } else {
            0
        };
        Ok(CreateTopicRequest {
            version,
            name,
            partitions,
            retention_ms,
            retention_bytes,
            segment_bytes,
            segment_ms,
            durability,
            flush_ms,
            replication_factor,
        })
    }
}

impl DeleteTopicRequest {
    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_string(out, &self.name);
    }

    pub(super) fn decode(r: &mut Reader<BytesMut>) -> Result<Self, WireError> {
        Ok(DeleteTopicRequest {
            name: r.string("name")?,
        })
    }
}

impl ListTopicsResponse {
    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_array_len(out, self.topics.len());
        for t in &self.topics {
            put_string(out, &t.name);
            out.put_u32(t.partitions);
        }
    }

    pub(super) fn decode(r: &mut Reader<Bytes>) -> Result<Self, WireError> {
        let topics = r.array("topics", TOPIC_LISTING_BYTES_MIN, |r| {
            Ok(TopicListing {
                name: r.string("topics[].name")?,
                partitions: r.u32("topics[].partitions")?,
            })
        })?;
        Ok(ListTopicsResponse { topics })
    }
}
