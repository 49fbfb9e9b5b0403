//! Matching responses to requests on one pipelined connection, without I/O.
//!
//! The broker answers the requests of a connection in the order they arrived, each response
//! carrying its request's correlation id, and never answers a produce with `acks = 0`
//! (`docs/PROTOCOL.md`, "Pipelining and ordering"). So a FIFO of the outstanding requests that
//! expect an answer is enough: [`Correlator::encode`] appends a request frame to the outgoing
//! bytes and, if it will be answered, queues its token; [`Correlator::decode`] cuts the next
//! response frame out of the incoming bytes, checks its correlation id against the head of the
//! FIFO and hands back that request's token with the decoded response. A response nobody asked
//! for, or one out of order, is a protocol error after which the connection must be closed.

use std::collections::VecDeque;

use bytes::BytesMut;

use quill_proto::frame::{FrameDecoder, SIZE_PREFIX_BYTES};
use quill_proto::protocol::{decode_response, ApiKey, Request, Response};

/// A request the broker will answer, waiting for its response.
struct Outstanding<T> {
    correlation_id: u32,
    api_key: ApiKey,
    /// The version the request went as: the response comes in the same.
    version: u16,
    token: T,
}

/// What [`Correlator::encode`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Encoded {
    pub(crate) correlation_id: u32,
    /// False for a produce with `acks = 0`: no response will come, and no token was queued.
    pub(crate) expects_response: bool,
}

/// A request frame over the broker's `frame_bytes_max`; nothing was queued or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RequestTooLarge {
    pub(crate) bytes: usize,
    pub(crate) max: usize,
}

/// The correlation state of one connection. Lives with the connection, on its executor.
pub(crate) struct Correlator<T> {
    next_correlation_id: u32,
    outstanding: VecDeque<Outstanding<T>>,
    decoder: FrameDecoder,
    request_frame_bytes_max: usize,
}

impl<T> Correlator<T> {
    /// Response frames over `response_frame_bytes_max` are refused; request frames over
    /// `request_frame_bytes_max` (the broker's limit) are never sent.
    pub(crate) fn new(response_frame_bytes_max: usize, request_frame_bytes_max: usize) -> Self {
        Correlator {
            next_correlation_id: 1,
            outstanding: VecDeque::new(),
            decoder: FrameDecoder::for_responses(response_frame_bytes_max),
            request_frame_bytes_max,
        }
    }

    /// Applies the broker's limit once ApiVersions told it.
    pub(crate) fn set_request_frame_bytes_max(&mut self, bytes: usize) {
        self.request_frame_bytes_max = bytes;
    }

    /// Requests sent that still wait for their response.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Appends `request`'s whole frame to `out` and, when the broker will answer it, queues
    /// the token `token()` makes. Called in the order the frames go to the socket.
    pub(crate) fn encode(
        &mut self,
        request: &Request,
        out: &mut BytesMut,
        token: impl FnOnce() -> T,
    ) -> Result<Encoded, RequestTooLarge> {
        let correlation_id = self.next_correlation_id;
        let start = out.len();
        request.encode(correlation_id, out);
        let size = out.len() - start - SIZE_PREFIX_BYTES;
        if size > self.request_frame_bytes_max {
            out.truncate(start);
            return Err(RequestTooLarge {
                bytes: size,
                max: self.request_frame_bytes_max,
            });
        }
        self.next_correlation_id = correlation_id.wrapping_add(1);
        let expects_response = request.expects_response();
        if expects_response {
            self.outstanding.push_back(Outstanding {
                correlation_id,
                api_key: request.api_key(),
                version: request.version(),
                token: token(),
            });
        }
        Ok(Encoded {
            correlation_id,
            expects_response,
        })
    }

    /// Cuts the next whole response frame out of `buf` and matches it with the oldest
    /// outstanding request. `Ok(None)`: more bytes are needed. `Err`: the connection is
    /// unusable (the reason is for a person); every token is still queued, for
    /// [`Correlator::take_outstanding`].
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<(T, Response)>, String> {
        let frame = match self.decoder.decode(buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("bad response frame: {e}")),
        };
        let Some(head) = self.outstanding.front() else {
            return Err("a response arrived with no request outstanding".to_string());
        };
        let (api_key, version, expected) = (head.api_key, head.version, head.correlation_id);
        let (got, response) = decode_response(api_key, version, frame.freeze())
            .map_err(|e| format!("undecodable {} response: {e}", api_key.as_str()))?;
        if got != expected {
            return Err(format!(
                "response with correlation id {got} where {expected} was next"
            ));
        }
        let head = self.outstanding.pop_front().expect("checked above");
        Ok(Some((head.token, response)))
    }

    /// Removes every outstanding token, oldest first (the connection is gone).
    pub(crate) fn take_outstanding(&mut self) -> Vec<T> {
        self.outstanding.drain(..).map(|o| o.token).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quill_proto::error_code::ErrorCode;
    use quill_proto::protocol::{
        encode_response, Acks, DeleteTopicRequest, ListTopicsResponse, ProducePartition,
        ProduceRequest, ProduceTopic, TopicListing,
    };

    fn delete(name: &str) -> Request {
        Request::DeleteTopic(DeleteTopicRequest { name: name.into() })
    }

    fn produce(acks: Acks) -> Request {
        Request::Produce(ProduceRequest {
            version: 0,
            acks,
            timeout_ms: 1000,
            topics: vec![ProduceTopic {
                name: "t".into(),
                partitions: vec![ProducePartition {
                    partition: 0,
                    records: BytesMut::from(&[1u8, 2, 3][..]),
                }],
            }],
        })
    }

    fn response(correlation_id: u32, response: &Response) -> BytesMut {
        BytesMut::from(&encode_response(correlation_id, 0, response).to_bytes()[..])
    }

    #[test]
    fn responses_match_requests_in_order_and_acks0_is_skipped() {
        let mut c = Correlator::new(1 << 20, 1 << 20);
        let mut out = BytesMut::new();
        let a = c.encode(&delete("a"), &mut out, || "a").unwrap();
        let z = c.encode(&produce(Acks::None), &mut out, || "zero").unwrap();
        let b = c.encode(&Request::ListTopics, &mut out, || "b").unwrap();
        assert!(a.expects_response && !z.expects_response && b.expects_response);
        assert_eq!(
            (a.correlation_id, z.correlation_id, b.correlation_id),
            (1, 2, 3)
        );
        assert_eq!(c.outstanding(), 2);

        let listing = Response::ListTopics(ListTopicsResponse {
            topics: vec![TopicListing {
                name: "x".into(),
                partitions: 2,
            }],
        });
        let mut input = response(1, &Response::DeleteTopic);
        input.extend_from_slice(&response(3, &listing));
        // Fed one byte at a time, both come out, each with its own token.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in input {
            buf.extend_from_slice(&[byte]);
            if let Some(item) = c.decode(&mut buf).unwrap() {
                got.push(item);
            }
        }
        assert_eq!(got, vec![("a", Response::DeleteTopic), ("b", listing)]);
        assert_eq!(c.outstanding(), 0);
    }

    #[test]
    fn error_responses_decode_for_any_api() {
        let mut c = Correlator::new(1 << 20, 1 << 20);
        let mut out = BytesMut::new();
        c.encode(&produce(Acks::Leader), &mut out, || 7).unwrap();
        let err = Response::error(ErrorCode::BrokerShuttingDown, "bye");
        let mut buf = response(1, &err);
        assert_eq!(c.decode(&mut buf).unwrap(), Some((7, err)));
    }

    #[test]
    fn out_of_order_or_unsolicited_responses_are_protocol_errors() {
        let mut c: Correlator<u8> = Correlator::new(1 << 20, 1 << 20);
        let mut buf = response(1, &Response::DeleteTopic);
        assert!(c
            .decode(&mut buf)
            .unwrap_err()
            .contains("no request outstanding"));

        let mut c = Correlator::new(1 << 20, 1 << 20);
        let mut out = BytesMut::new();
        c.encode(&delete("a"), &mut out, || 1).unwrap();
        c.encode(&delete("b"), &mut out, || 2).unwrap();
        let mut buf = response(2, &Response::DeleteTopic);
        assert!(c
            .decode(&mut buf)
            .unwrap_err()
            .contains("correlation id 2 where 1"));
        assert_eq!(c.take_outstanding(), vec![1, 2]);
    }

    #[test]
    fn oversized_requests_are_refused_before_anything_is_queued() {
        let mut c = Correlator::new(1 << 20, 16);
        let mut out = BytesMut::from(&b"earlier"[..]);
        let e = c
            .encode(&delete("a-long-topic-name"), &mut out, || 1)
            .unwrap_err();
        assert_eq!(e.max, 16);
        assert!(e.bytes > 16);
        assert_eq!(&out[..], b"earlier");
        assert_eq!(c.outstanding(), 0);
        // The correlation id was not used up.
        assert_eq!(
            c.encode(&delete("a"), &mut out, || 1)
                .unwrap()
                .correlation_id,
            1
        );
    }

    #[test]
    fn oversized_response_frames_are_refused() {
        let mut c: Correlator<u8> = Correlator::new(64, 1 << 20);
        let mut buf = BytesMut::from(&1000u32.to_be_bytes()[..]);
        assert!(c
            .decode(&mut buf)
            .unwrap_err()
            .contains("bad response frame"));
    }
}
