//! ListOffsets on behalf of the consumer: where an assigned partition starts.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Consumer;
use crate::error::ClientError;
use crate::metadata::Route;
use quill_proto::error_code::ErrorCode;
use quill_proto::protocol::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic, Request, Response,
};

impl Consumer {
    /// ListOffsets for `partitions` of `topic` at `timestamp` (or the earliest/latest
    /// sentinels), one request per owning connection, retrying retriable failures.
    pub(super) async fn list_offsets(
        &self,
        topic: &Arc<str>,
        partitions: &[u32],
        timestamp: i64,
    ) -> Result<Vec<i64>, ClientError> {
        let mut found: Vec<Option<i64>> = vec![None; partitions.len()];
        let retries_max = self.client.config().retries_max;
        let mut attempt = 0;
        loop {
            let mut last_error: Option<ClientError> = None;
            let mut groups: Vec<(SocketAddr, Vec<usize>)> = Vec::new();
            for (i, &p) in partitions.iter().enumerate() {
                if found[i].is_some() {
                    continue;
                }
                match self.client.route(topic, p) {
                    Route::To(addr) => match groups.iter_mut().find(|(a, _)| *a == addr) {
                        Some((_, v)) => v.push(i),
                        None => groups.push((addr, vec![i])),
                    },
                    Route::NoTopic => {
                        return Err(ClientError::UnknownTopic {
                            topic: topic.to_string(),
                        })
                    }
                    Route::NoPartition { partitions } => {
                        return Err(ClientError::UnknownPartition {
                            topic: topic.to_string(),
                            partition: p,
                            partitions,
                        })
                    }
                    Route::Unknown => {
                        last_error = Some(ClientError::Broker {
                            code: ErrorCode::UnknownTopicOrPartition,
                            message: Some("no leader known".into()),
                            context: format!("list offsets of {topic}-{p}"),
                        });
                    }
                }
            }
            for (addr, members) in groups {
                let request = Request::ListOffsets(ListOffsetsRequest {
                    version: 1,
                    topics: vec![ListOffsetsTopic {
                        name: topic.to_string(),
                        partitions: members
                            .iter()
                            .map(|&i| ListOffsetsPartition {
                                partition: partitions[i],
                                timestamp,
                            })
                            .collect(),
                    }],
                });
                match self
                    .client
                    .call_at(addr, &request, self.client.request_timeout())
                    .await
                {
                    Ok(Response::ListOffsets(r)) => {
                        for p in r.topics.into_iter().flat_map(|t| t.partitions) {
                            let Some(&i) = members.iter().find(|&&i| partitions[i] == p.partition)
                            else {
                                continue;
                            };
                            if p.error_code.is_none() {
                                found[i] = Some(p.offset);
                            } else {
                                let e = ClientError::Broker {
                                    code: p.error_code,
                                    message: None,
                                    context: format!("list offsets of {topic}-{}", p.partition),
                                };
                                if !p.error_code.is_retriable() {
                                    return Err(e);
                                }
                                last_error = Some(e);
                            }
                        }
                    }
                    Ok(Response::Error { code, message }) => {
                        let e = ClientError::Broker {
                            code,
                            message,
                            context: format!("list offsets of {topic}"),
                        };
                        if !code.is_retriable() {
                            return Err(e);
                        }
                        last_error = Some(e);
                    }
                    Ok(other) => {
                        return Err(ClientError::Protocol {
                            addr: addr.to_string(),
                            reason: format!("ListOffsets answered with {:?}", other.api_key()),
                        })
                    }
                    Err(e) if e.is_retriable() && !e.is_timeout() => last_error = Some(e),
                    Err(e) => return Err(e),
                }
            }
            if found.iter().all(Option::is_some) {
                return Ok(found.into_iter().map(|o| o.expect("all found")).collect());
            }
            if attempt >= retries_max {
                return Err(last_error.unwrap_or_else(|| ClientError::Broker {
                    code: ErrorCode::UnknownTopicOrPartition,
                    message: None,
                    context: format!("list offsets of {topic}"),
                }));
            }
            attempt += 1;
            glommio::timer::sleep(self.client.retry_backoff()).await;
            // The leaders may have moved, or the topic may just have been created.
            if let Err(e @ ClientError::UnknownTopic { .. }) = self.client.topic(topic).await {
                return Err(e);
            }
        }
    }
}
