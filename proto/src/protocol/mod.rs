//! The request and response codec of the native protocol v1, without I/O.
//!
//! A request frame (after its size prefix, as [`FrameDecoder`](crate::frame::FrameDecoder)
//! hands it over) is `api_key u16`, `api_version u16`, `correlation_id u32`, then the body of
//! that API. A response frame is `correlation_id u32`, `error_code u16`, `error_message`
//! (nullable string), then, only when `error_code` is 0, the body of the API. `docs/PROTOCOL.md`
//! gives every field.
//!
//! [`decode_request`] parses a request, checking every length against the frame; it never
//! panics and never allocates in proportion to a length it has not checked. Produce records are
//! zero-copy slices of the frame. [`encode_response`] writes a response as a list of chunks so the
//! stored batches of a fetch go to the socket as they are. [`Request::encode`] and
//! [`decode_response`] are the client's half.

mod api_versions;
mod describe_cluster;
mod fetch;
mod leader;
mod list_offsets;
mod metadata;
mod produce;
mod topics;
mod wire;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod samples;
#[cfg(test)]
mod tests;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error_code::ErrorCode;
use crate::frame::REQUEST_HEADER_BYTES;
use wire::{framed, put_message, ChunkWriter, Reader, WireError};

pub use api_versions::{ApiVersionRange, ApiVersionsRequest, ApiVersionsResponse, Limits};
pub use describe_cluster::{
    ClusterNode, ClusterPartition, ClusterReplica, ClusterTopic, DescribeClusterRequest,
    DescribeClusterResponse,
};
pub use fetch::{
    FetchPartition, FetchPartitionResponse, FetchRequest, FetchResponse, FetchTopic,
    FetchTopicResponse,
};
pub use leader::LeaderHint;
pub use list_offsets::{
    ListOffsetsPartition, ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse,
    ListOffsetsTopic, ListOffsetsTopicResponse, OFFSET_NONE, TIMESTAMP_EARLIEST, TIMESTAMP_LATEST,
};
pub use metadata::{
    BrokerMetadata, DamagedRangeMetadata, MetadataRequest, MetadataResponse, PartitionMetadata,
    ShardPort, TopicMetadata,
};
pub use produce::{
    Acks, ProducePartition, ProducePartitionResponse, ProduceRequest, ProduceResponse,
    ProduceTopic, ProduceTopicResponse,
};
pub use topics::{
    is_valid_topic_name, CreateTopicRequest, DeleteTopicRequest, Durability, ListTopicsResponse,
    Retention, TopicListing, TOPIC_NAME_BYTES_MAX,
};

/// The APIs of the protocol. The numbers are the wire `api_key` and are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum ApiKey {
    ApiVersions = 0,
    Metadata = 1,
    CreateTopic = 2,
    DeleteTopic = 3,
    ListTopics = 4,
    Produce = 5,
    Fetch = 6,
    ListOffsets = 7,
    DescribeCluster = 8,
}

/// Every API this build serves, with the lowest and highest version of it, inclusive.
pub const SUPPORTED: &[(ApiKey, u16, u16)] = &[
    (ApiKey::ApiVersions, 0, 0),
    (ApiKey::Metadata, 0, 2),
    (ApiKey::CreateTopic, 0, 1),
    (ApiKey::DeleteTopic, 0, 0),
    (ApiKey::ListTopics, 0, 0),
    (ApiKey::Produce, 0, 1),
    (ApiKey::Fetch, 0, 1),
    (ApiKey::ListOffsets, 0, 1),
    (ApiKey::DescribeCluster, 0, 0),
];

impl ApiKey {
    /// Every API, in key order.
    pub const ALL: [ApiKey; 9] = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::CreateTopic,
        ApiKey::DeleteTopic,
        ApiKey::ListTopics,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::DescribeCluster,
    ];

    /// Same as the module's [`SUPPORTED`].
    pub const SUPPORTED: &'static [(ApiKey, u16, u16)] = SUPPORTED;

    pub fn from_u16(value: u16) -> Option<ApiKey> {
        ApiKey::ALL.get(usize::from(value)).copied()
    }

    pub fn as_u16(self) -> u16 {
        self as u16
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApiKey::ApiVersions => "ApiVersions",
            ApiKey::Metadata => "Metadata",
            ApiKey::CreateTopic => "CreateTopic",
            ApiKey::DeleteTopic => "DeleteTopic",
            ApiKey::ListTopics => "ListTopics",
            ApiKey::Produce => "Produce",
            ApiKey::Fetch => "Fetch",
            ApiKey::ListOffsets => "ListOffsets",
            ApiKey::DescribeCluster => "DescribeCluster",
        }
    }

    /// The newest version of this API this build speaks.
    pub fn version_max(self) -> u16 {
        self.versions().1
    }

    /// The versions of this API this build serves, inclusive.
    pub fn versions(self) -> (u16, u16) {
        SUPPORTED
            .iter()
            .find(|&&(key, _, _)| key == self)
            .map(|&(_, min, max)| (min, max))
            .expect("every ApiKey is in SUPPORTED")
    }
}

// ApiKey::from_u16 indexes ALL by the key, so ALL must be in key order, and SUPPORTED must list
// every key once.
const _: () = {
    let mut i = 0;
    while i < ApiKey::ALL.len() {
        assert!(ApiKey::ALL[i] as usize == i);
        assert!(SUPPORTED[i].0 as usize == i);
        i += 1;
    }
    assert!(SUPPORTED.len() == ApiKey::ALL.len());
};

/// The fixed header of every request frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestHeader {
    pub api_key: u16,
    pub api_version: u16,
    /// Chosen by the client and echoed in the response; the broker does not interpret it.
    pub correlation_id: u32,
}

impl RequestHeader {
    /// The header at the start of `frame` (a frame without its size prefix), if its 8 bytes
    /// are there. Lets a broker learn the correlation id of a frame it refuses.
    pub fn parse(frame: &[u8]) -> Option<RequestHeader> {
        let h = frame.first_chunk::<REQUEST_HEADER_BYTES>()?;
        Some(RequestHeader {
            api_key: u16::from_be_bytes([h[0], h[1]]),
            api_version: u16::from_be_bytes([h[2], h[3]]),
            correlation_id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        })
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.api_key);
        out.put_u16(self.api_version);
        out.put_u32(self.correlation_id);
    }
}

/// A decoded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    ApiVersions(ApiVersionsRequest),
    Metadata(MetadataRequest),
    CreateTopic(CreateTopicRequest),
    DeleteTopic(DeleteTopicRequest),
    /// ListTopics has an empty body.
    ListTopics,
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    DescribeCluster(DescribeClusterRequest),
}

impl Request {
    pub fn api_key(&self) -> ApiKey {
        match self {
            Request::ApiVersions(_) => ApiKey::ApiVersions,
            Request::Metadata(_) => ApiKey::Metadata,
            Request::CreateTopic(_) => ApiKey::CreateTopic,
            Request::DeleteTopic(_) => ApiKey::DeleteTopic,
            Request::ListTopics => ApiKey::ListTopics,
            Request::Produce(_) => ApiKey::Produce,
            Request::Fetch(_) => ApiKey::Fetch,
            Request::ListOffsets(_) => ApiKey::ListOffsets,
            Request::DescribeCluster(_) => ApiKey::DescribeCluster,
        }
    }

    /// Whether the broker answers this request. Only a produce with `acks = 0` goes unanswered.
    pub fn expects_response(&self) -> bool {
        !matches!(
            self,
            Request::Produce(ProduceRequest {
                acks: Acks::None,
                ..
            })
        )
    }

    /// The version this request goes as: the one its `version` field names (APIs with a
    /// single version: 0). A Produce with [`Acks::All`] goes as version 1 at least, the first
    /// that can carry it.
    pub fn version(&self) -> u16 {
        match self {
            Request::Metadata(r) => r.version,
            Request::CreateTopic(r) => r.version,
            Request::Produce(r) => r.version.max(r.acks.version_min()),
            Request::Fetch(r) => r.version,
            Request::ListOffsets(r) => r.version,
            Request::ApiVersions(_)
            | Request::DeleteTopic(_)
            | Request::ListTopics
            | Request::DescribeCluster(_) => 0,
        }
    }

    /// Appends the whole request frame, size prefix included, at [`Request::version`].
    ///
    /// # Panics
    /// If a string is over `i16::MAX` bytes, an array over `i32::MAX` elements, or the frame
    /// over `u32::MAX` bytes.
    pub fn encode(&self, correlation_id: u32, out: &mut BytesMut) {
        framed(out, |out| {
            let api_key = self.api_key();
            RequestHeader {
                api_key: api_key.as_u16(),
                api_version: self.version(),
                correlation_id,
            }
            .encode(out);
            match self {
                Request::ApiVersions(r) => r.encode(out),
                Request::Metadata(r) => r.encode(out),
                Request::CreateTopic(r) => r.encode(out),
                Request::DeleteTopic(r) => r.encode(out),
                Request::ListTopics => {}
                Request::Produce(r) => r.encode(out),
                Request::Fetch(r) => r.encode(out),
                Request::ListOffsets(r) => r.encode(out),
                Request::DescribeCluster(r) => r.encode(out),
            }
        });
    }
}

/// A response to encode or a decoded one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    ApiVersions(ApiVersionsResponse),
    Metadata(MetadataResponse),
    /// Success: CreateTopic has no fields beyond the common header.
    CreateTopic,
    /// Success: DeleteTopic has no fields beyond the common header.
    DeleteTopic,
    ListTopics(ListTopicsResponse),
    Produce(ProduceResponse),
    Fetch(FetchResponse),
    ListOffsets(ListOffsetsResponse),
    DescribeCluster(DescribeClusterResponse),
    /// The request as a whole failed; valid as the answer to any request, even an unknown API.
    /// `code` is never [`ErrorCode::None`].
    Error {
        code: ErrorCode,
        message: Option<String>,
    },
}

impl Response {
    /// The API this answers; `None` for [`Response::Error`], which answers any.
    pub fn api_key(&self) -> Option<ApiKey> {
        Some(match self {
            Response::ApiVersions(_) => ApiKey::ApiVersions,
            Response::Metadata(_) => ApiKey::Metadata,
            Response::CreateTopic => ApiKey::CreateTopic,
            Response::DeleteTopic => ApiKey::DeleteTopic,
            Response::ListTopics(_) => ApiKey::ListTopics,
            Response::Produce(_) => ApiKey::Produce,
            Response::Fetch(_) => ApiKey::Fetch,
            Response::ListOffsets(_) => ApiKey::ListOffsets,
            Response::DescribeCluster(_) => ApiKey::DescribeCluster,
            Response::Error { .. } => return None,
        })
    }

    /// A [`Response::Error`] with a message.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error {
            code,
            message: Some(message.into()),
        }
    }
}

/// A request or response that could not be decoded.
///
/// For a request, `header` is there whenever its 8 bytes were, so the broker can answer with the
/// right correlation id ([`DecodeError::to_response`]); `code` is what to answer with:
/// `UnsupportedVersion` for an unknown API key or version, `InvalidConfig` for an out-of-range
/// CreateTopic setting, `InvalidRequest` for anything malformed. For a response (decoded by a
/// client), `header` carries the API asked for and the correlation id once it was read, and
/// `code` is `InvalidRequest` for a malformed frame or `CorruptMessage` for fetched records
/// that are not whole batches.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DecodeError {
    pub header: Option<RequestHeader>,
    pub code: ErrorCode,
    pub message: String,
}

impl DecodeError {
    fn wire(header: RequestHeader, e: WireError) -> DecodeError {
        DecodeError {
            header: Some(header),
            code: e.code(),
            message: e.to_string(),
        }
    }

    /// The correlation id and error response a broker sends back, if the header was read;
    /// without it the broker cannot answer and closes the connection. A Produce with `acks = 0`
    /// is never answered, even when it fails to decode: check [`frame_expects_response`] on the
    /// frame before decoding it, and close the connection instead of answering.
    pub fn to_response(&self) -> Option<(u32, Response)> {
        let header = self.header?;
        Some((
            header.correlation_id,
            Response::Error {
                code: self.code,
                message: Some(self.message.clone()),
            },
        ))
    }
}

/// Whether the broker answers the request in `frame` (without its size prefix), judging from
/// its first bytes only, so it also tells for a frame that [`decode_request`] refuses: false
/// only for a Produce whose `acks` byte is 0. Such a request gets no response, and when it fails
/// the broker closes the connection instead (`docs/PROTOCOL.md`, "Pipelining and ordering").
pub fn frame_expects_response(frame: &[u8]) -> bool {
    let Some(header) = RequestHeader::parse(frame) else {
        return true;
    };
    let acks = frame.get(REQUEST_HEADER_BYTES).copied();
    // `acks` is the first byte of the body in every Produce version.
    let (min, max) = ApiKey::Produce.versions();
    !(header.api_key == ApiKey::Produce.as_u16()
        && (min..=max).contains(&header.api_version)
        && acks == Some(0))
}

/// Decodes a request frame as [`FrameDecoder::decode`](crate::frame::FrameDecoder::decode)
/// returns it (no size prefix). The body must end exactly at the end of the frame.
pub fn decode_request(mut frame: BytesMut) -> Result<(RequestHeader, Request), DecodeError> {
    let Some(header) = RequestHeader::parse(&frame) else {
        return Err(DecodeError {
            header: None,
            code: ErrorCode::InvalidRequest,
            message: format!(
                "frame of {} bytes is shorter than the {REQUEST_HEADER_BYTES}-byte request header",
                frame.len()
            ),
        });
    };
    let unsupported = |message| DecodeError {
        header: Some(header),
        code: ErrorCode::UnsupportedVersion,
        message,
    };
    let api = ApiKey::from_u16(header.api_key)
        .ok_or_else(|| unsupported(format!("unknown api_key {}", header.api_key)))?;
    let (min, max) = api.versions();
    if !(min..=max).contains(&header.api_version) {
        return Err(unsupported(format!(
            "{} version {} is not supported; versions {min} to {max} are",
            api.as_str(),
            header.api_version
        )));
    }
    frame.advance(REQUEST_HEADER_BYTES);
    let mut r = Reader::new(frame, REQUEST_HEADER_BYTES);
    let request = match api {
        ApiKey::ApiVersions => ApiVersionsRequest::decode(&mut r).map(Request::ApiVersions),
        ApiKey::Metadata => {
            MetadataRequest::decode(&mut r, header.api_version).map(Request::Metadata)
        }
        ApiKey::CreateTopic => {
            CreateTopicRequest::decode(&mut r, header.api_version).map(Request::CreateTopic)
        }
        ApiKey::DeleteTopic => DeleteTopicRequest::decode(&mut r).map(Request::DeleteTopic),
        ApiKey::ListTopics => Ok(Request::ListTopics),
        ApiKey::Produce => ProduceRequest::decode(&mut r, header.api_version).map(Request::Produce),
        ApiKey::Fetch => FetchRequest::decode(&mut r, header.api_version).map(Request::Fetch),
        ApiKey::ListOffsets => {
            ListOffsetsRequest::decode(&mut r, header.api_version).map(Request::ListOffsets)
        }
        ApiKey::DescribeCluster => {
            DescribeClusterRequest::decode(&mut r).map(Request::DescribeCluster)
        }
    }
    .and_then(|request| r.finish().map(|()| request))
    .map_err(|e| DecodeError::wire(header, e))?;
    Ok((header, request))
}

/// A whole response frame, size prefix included, as chunks to write in order (one `writev`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseFrame {
    pub chunks: Vec<Bytes>,
}

impl ResponseFrame {
    /// Total size in bytes, size prefix included.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// Always false: a frame has at least its prefix and header.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunks concatenated (copies; for tests and simple clients).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        for chunk in &self.chunks {
            out.put_slice(chunk);
        }
        out.freeze()
    }
}

/// Encodes a whole response frame to a request of `version` (the request header's
/// `api_version`): fields the version does not have are left out. Small fields are written into
/// fresh buffers; each fetched batch is its own chunk, shared with the caller's `Bytes`, never
/// copied.
///
/// # Panics
/// If `response` is a [`Response::Error`] with [`ErrorCode::None`] (a decoder would then expect
/// the fields of some API), a string is over `i16::MAX` bytes, an array over `i32::MAX`
/// elements or a partition's records over `i32::MAX` bytes. Error messages over `i16::MAX`
/// bytes are cut instead.
pub fn encode_response(correlation_id: u32, version: u16, response: &Response) -> ResponseFrame {
    let mut w = ChunkWriter::new();
    w.buf().put_u32(correlation_id);
    if let Response::Error { code, message } = response {
        assert!(
            !code.is_none(),
            "Response::Error with ErrorCode::None would read as a success"
        );
        w.buf().put_u16(code.as_u16());
        put_message(w.buf(), message.as_deref());
        return ResponseFrame { chunks: w.finish() };
    }
    w.buf().put_u16(ErrorCode::None.as_u16());
    put_message(w.buf(), None);
    match response {
        Response::ApiVersions(r) => r.encode(w.buf()),
        Response::Metadata(r) => r.encode(w.buf(), version),
        Response::CreateTopic | Response::DeleteTopic => {}
        Response::ListTopics(r) => r.encode(w.buf()),
        Response::Produce(r) => r.encode(w.buf(), version),
        Response::Fetch(r) => r.encode(&mut w, version),
        Response::ListOffsets(r) => r.encode(w.buf(), version),
        Response::DescribeCluster(r) => r.encode(w.buf()),
        Response::Error { .. } => unreachable!("handled above"),
    }
    ResponseFrame { chunks: w.finish() }
}

/// Decodes a response frame (no size prefix) to a request of `api_key` sent as `version`,
/// returning its correlation id. Fetched records are split into whole batches with zero-copy slices of
/// `frame`. An error code this build does not know decodes as `UnknownServerError`.
pub fn decode_response(
    api_key: ApiKey,
    version: u16,
    frame: Bytes,
) -> Result<(u32, Response), DecodeError> {
    let mut r = Reader::new(frame, 0);
    let correlation_id = r.u32("correlation_id").map_err(|e| DecodeError {
        header: None,
        code: e.code(),
        message: e.to_string(),
    })?;
    let header = RequestHeader {
        api_key: api_key.as_u16(),
        api_version: version,
        correlation_id,
    };
    decode_response_body(api_key, version, &mut r)
        .and_then(|response| r.finish().map(|()| response))
        .map(|response| (correlation_id, response))
        .map_err(|e| DecodeError::wire(header, e))
}

fn decode_response_body(
    api_key: ApiKey,
    version: u16,
    r: &mut Reader<Bytes>,
) -> Result<Response, WireError> {
    let code = r.u16("error_code")?;
    let message = r.nullable_string("error_message")?;
    if code != 0 {
        return Ok(match ErrorCode::from_u16(code) {
            Some(code) => Response::Error { code, message },
            None => Response::Error {
                code: ErrorCode::UnknownServerError,
                message: Some(match message {
                    Some(m) => format!("error code {code}: {m}"),
                    None => format!("error code {code}"),
                }),
            },
        });
    }
    Ok(match api_key {
        ApiKey::ApiVersions => Response::ApiVersions(ApiVersionsResponse::decode(r)?),
        ApiKey::Metadata => Response::Metadata(MetadataResponse::decode(r, version)?),
        ApiKey::CreateTopic => Response::CreateTopic,
        ApiKey::DeleteTopic => Response::DeleteTopic,
        ApiKey::ListTopics => Response::ListTopics(ListTopicsResponse::decode(r)?),
        ApiKey::Produce => Response::Produce(ProduceResponse::decode(r, version)?),
        ApiKey::Fetch => Response::Fetch(FetchResponse::decode(r, version)?),
        ApiKey::ListOffsets => Response::ListOffsets(ListOffsetsResponse::decode(r, version)?),
        ApiKey::DescribeCluster => Response::DescribeCluster(DescribeClusterResponse::decode(r)?),
    })
}
