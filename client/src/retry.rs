//! Whether a failed produce is sent again, without I/O: the producer's retry rule as a function
//! of the failure, the unit's history and the time, so tests drive it without a broker.
//!
//! A retriable failure is retried until the unit's delivery timeout (`delivery_timeout_ms`,
//! counted from its oldest batch's first record) would pass before the next attempt; then the
//! records fail with [`ClientError::DeliveryTimedOut`], which names the last error. A leader
//! change (`NOT_LEADER`, `LEADER_NOT_AVAILABLE`, or the leader's broker refusing or dropping
//! connections: it went away) does not use up `retries_max`: it is what a failover looks like, and the delivery timeout
//! bounds it. Other retriable failures also stop after `retries_max` retries. A client-side
//! timeout (waiting for a response) is final, as before: the broker had a whole request
//! timeout, and a retry would multiply the wait for every record behind it.

use std::time::{Duration, Instant};

use super::error::ClientError;
use quill_proto::error_code::ErrorCode;

/// The producer's retry settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    pub(crate) retries_max: u32,
    pub(crate) backoff: Duration,
    pub(crate) delivery_timeout: Duration,
}

/// What to do with a unit that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send it again no earlier than `not_before`; `refresh`: refresh the topic's metadata first
    /// (the leader may have moved); `counted`: the retry counts against `retries_max`.
    Retry {
        not_before: Instant,
        refresh: bool,
        counted: bool,
    },
    /// Fail its records with the error as it is.
    GiveUp,
    /// Fail its records with [`ClientError::DeliveryTimedOut`] around the error.
    TimedOut,
}

/// Whether `error` says the partition's leader moved or is being elected, so the metadata
/// needs a refresh before the next attempt and the retry is not counted.
pub(crate) fn is_leader_change(error: &ClientError) -> bool {
    match error {
        ClientError::Unreachable { .. } | ClientError::ConnectionLost { .. } => true,
        ClientError::Broker { code, .. } => {
            matches!(code, ErrorCode::NotLeader | ErrorCode::LeaderNotAvailable)
        }
        _ => false,
    }
}

/// The verdict on a unit created at `created`, retried `counted_retries` times so far (counted
/// ones), that failed at `now` with `error` (`retriable`: the failure allows a retry at all).
pub(crate) fn decide(
    policy: &RetryPolicy,
    error: &ClientError,
    retriable: bool,
    counted_retries: u32,
    created: Instant,
    now: Instant,
) -> Verdict {
    if !retriable || error.is_timeout() {
        return Verdict::GiveUp;
    }
    let leader_change = is_leader_change(error);
    if !leader_change && counted_retries >= policy.retries_max {
        return Verdict::GiveUp;
    }
    let not_before = now + policy.backoff;
    if not_before >= created + policy.delivery_timeout {
        return Verdict::TimedOut;
    }
    let refresh = leader_change
        || error.is_connection()
        || error.code().is_some_and(ErrorCode::needs_metadata_refresh);
    Verdict::Retry {
        not_before,
        refresh,
        counted: !leader_change,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            retries_max: 2,
            backoff: Duration::from_millis(100),
            delivery_timeout: Duration::from_secs(2),
        }
    }

    fn broker(code: ErrorCode) -> ClientError {
        ClientError::Broker {
            code,
            message: None,
            context: "produce to t-0".into(),
        }
    }

    #[test]
    fn a_leader_change_is_retried_with_a_refresh_until_the_delivery_timeout() {
        let t0 = Instant::now();
        for e in [
            broker(ErrorCode::NotLeader),
            broker(ErrorCode::LeaderNotAvailable),
            ClientError::Unreachable {
                addr: "127.0.0.1:1".into(),
                reason: "connection refused".into(),
            },
            ClientError::ConnectionLost {
                addr: "127.0.0.1:1".into(),
                reason: "reset".into(),
            },
        ] {
            // Far more attempts than retries_max: still retried, not counted.
            let v = decide(
                &policy(),
                &e,
                true,
                50,
                t0,
                t0 + Duration::from_millis(1800),
            );
            assert_eq!(
                v,
                Verdict::Retry {
                    not_before: t0 + Duration::from_millis(1900),
                    refresh: true,
                    counted: false
                },
                "{e}"
            );
            // The next attempt would start at the deadline: give up, saying so.
            let v = decide(&policy(), &e, true, 0, t0, t0 + Duration::from_millis(1900));
            assert_eq!(v, Verdict::TimedOut, "{e}");
        }
    }

    #[test]
    fn other_retriable_errors_stop_after_retries_max() {
        let t0 = Instant::now();
        let e = broker(ErrorCode::StorageError);
        assert!(matches!(
            decide(&policy(), &e, true, 1, t0, t0),
            Verdict::Retry {
                refresh: false,
                counted: true,
                ..
            }
        ));
        assert_eq!(decide(&policy(), &e, true, 2, t0, t0), Verdict::GiveUp);
        // ...and by the delivery timeout too.
        let late = t0 + Duration::from_secs(2);
        assert_eq!(decide(&policy(), &e, true, 0, t0, late), Verdict::TimedOut);
        // Leadership-related codes that are not a leader change refresh but count.
        let e = broker(ErrorCode::UnknownTopicOrPartition);
        assert!(matches!(
            decide(&policy(), &e, true, 0, t0, t0),
            Verdict::Retry {
                refresh: true,
                counted: true,
                ..
            }
        ));
    }

    #[test]
    fn final_errors_and_client_timeouts_are_not_retried() {
        let t0 = Instant::now();
        let e = broker(ErrorCode::CorruptMessage);
        assert_eq!(decide(&policy(), &e, false, 0, t0, t0), Verdict::GiveUp);
        let e = ClientError::TimedOut {
            addr: "a".into(),
            timeout_ms: 1,
        };
        assert_eq!(decide(&policy(), &e, true, 0, t0, t0), Verdict::GiveUp);
    }
}
