//! ApiVersions (key 0): what the broker speaks and the limits a client must stay within.

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::{put_array_len, put_string, Reader, WireError};
use super::SUPPORTED;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiVersionsRequest {
    /// Free-form name and version of the client library, for the broker's logs.
    pub client_software_name: String,
}

/// The versions of one API the broker accepts, inclusive. `api_key` stays a plain `u16` so a
/// client can decode the answer of a newer broker that lists APIs it does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiVersionRange {
    pub api_key: u16,
    pub min_version: u16,
    pub max_version: u16,
}

/// The broker's limits and identity, as sent in ApiVersions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame the broker accepts, counted after the size prefix.
    pub frame_bytes_max: u32,
    /// Largest record batch the broker accepts in a produce request.
    pub batch_bytes_max: u32,
    /// Most record bytes one fetch response carries (at least one batch is always returned).
    pub fetch_bytes_max: u32,
    /// Longest `max_wait_ms` the broker honours in a fetch request.
    pub fetch_wait_ms_max: u32,
    /// Most requests one connection may have in flight.
    pub inflight_requests_max: u32,
    /// The id of this broker.
    pub node_id: u32,
    /// How many shards (cores) this broker runs.
    pub shard_count: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiVersionsResponse {
    pub apis: Vec<ApiVersionRange>,
    pub limits: Limits,
}

impl ApiVersionsResponse {
    /// The answer of this build: every API of [`SUPPORTED`], and `limits`.
    pub fn supported(limits: Limits) -> Self {
        ApiVersionsResponse {
            apis: SUPPORTED
                .iter()
                .map(|&(key, min_version, max_version)| ApiVersionRange {
                    api_key: key as u16,
                    min_version,
                    max_version,
                })
                .collect(),
            limits,
        }
    }
}

/// `api_key`, `min_version`, `max_version`.
const API_VERSION_RANGE_BYTES: usize = 6;

impl ApiVersionsRequest {
    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_string(out, &self.client_software_name);
    }

    pub(super) fn decode(r: &mut Reader<BytesMut>) -> Result<Self, WireError> {
        Ok(ApiVersionsRequest {
            client_software_name: r.string("client_software_name")?,
        })
    }
}

impl ApiVersionsResponse {
    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_array_len(out, self.apis.len());
        for api in &self.apis {
            out.put_u16(api.api_key);
            out.put_u16(api.min_version);
            out.put_u16(api.max_version);
        }
        let l = &self.limits;
        out.put_u32(l.frame_bytes_max);
        out.put_u32(l.batch_bytes_max);
        out.put_u32(l.fetch_bytes_max);
        out.put_u32(l.fetch_wait_ms_max);
        out.put_u32(l.inflight_requests_max);
        out.put_u32(l.node_id);
        out.put_u16(l.shard_count);
    }

    pub(super) fn decode(r: &mut Reader<Bytes>) -> Result<Self, WireError> {
        let apis = r.array("apis", API_VERSION_RANGE_BYTES, |r| {
            Ok(ApiVersionRange {
                api_key: r.u16("apis[].api_key")?,
                min_version: r.u16("apis[].min_version")?,
                max_version: r.u16("apis[].max_version")?,
            })
        })?;
        let limits = Limits {
            frame_bytes_max: r.u32("frame_bytes_max")?,
            batch_bytes_max: r.u32("batch_bytes_max")?,
            fetch_bytes_max: r.u32("fetch_bytes_max")?,
            fetch_wait_ms_max: r.u32("fetch_wait_ms_max")?,
            inflight_requests_max: r.u32("inflight_requests_max")?,
            node_id: r.u32("node_id")?,
            shard_count: r.u16("shard_count")?,
        };
        Ok(ApiVersionsResponse { apis, limits })
    }
}
