//! `replica-state`: what a replicated partition's Raft group must find again after a restart,
//! beside the partition's segments.
//!
//! It holds Raft's hard state (term, vote, commit), the voters, and the *anchor*: the Raft index
//! and term of one entry and the offset where the entry after it begins. The replica core keeps
//! raft index <-> offset only for entries after the anchor (`replication::raft`), and rebuilds
//! that window at start by reading the batches from the anchor's offset to the log end (each
//! batch is one entry, its leader epoch the entry's term).
//!
//! Term and vote must be durable before the node answers a vote or an append (Raft's rule);
//! commit may lag (it is written with the anchor), and a commit past the log end found at start
//! is lowered to it by the core. Text, version `1`, sealed with a `crc32c` line like the other
//! checkpoint files ([`super::checkpoint`]); replaced atomically with [`store`]. A damaged file
//! is refused, never believed: a wrong term or vote could let a node vote twice in one term.

use std::path::Path;

use super::checkpoint::{replace_file, seal, unseal};
use super::error::{LogError, Result};
use crate::types::Offset;

pub const REPLICA_STATE_FILE: &str = "replica-state";

/// The contents of `replica-state`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaStateFile {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
    /// Raft ids (node ids) of the group's voters.
    pub voters: Vec<u64>,
    /// The anchor's Raft index (0: no entry before the window).
    pub anchor_index: u64,
    pub anchor_term: u64,
    /// Where the entry after the anchor begins in the log.
    pub anchor_offset: Offset,
}

impl ReplicaStateFile {
    pub fn encode(&self) -> String {
        let voters: Vec<String> = self.voters.iter().map(u64::to_string).collect();
        seal(format!(
            "1\nterm {}\nvote {}\ncommit {}\nvoters {}\nanchor {} {} {}\n",
            self.term,
            self.vote,
            self.commit,
            voters.join(","),
            self.anchor_index,
            self.anchor_term,
            self.anchor_offset.0
        ))
    }

    pub fn decode(text: &str) -> std::result::Result<ReplicaStateFile, String> {
        let (version, body) = unseal(text)?;
        if version != 1 {
            return Err(format!("version {version} is not a replica-state version"));
        }
        let mut lines = body.lines().skip(1);
        let mut field = |name: &str| -> std::result::Result<String, String> {
            let line = lines.next().ok_or(format!("missing {name} line"))?;
            line.strip_prefix(name)
                .and_then(|r| r.strip_prefix(' '))
                .map(str::to_string)
                .ok_or(format!("expected a {name} line, found {line:?}"))
        };
        let number = |name: &str, s: &str| -> std::result::Result<u64, String> {
            s.parse()
                .map_err(|_| format!("{name}: {s:?} is not a number"))
        };
        let term = number("term", &field("term")?)?;
        let vote = number("vote", &field("vote")?)?;
        let commit = number("commit", &field("commit")?)?;
        let voters_text = field("voters")?;
        let voters = if voters_text.is_empty() {
            Vec::new()
        } else {
            voters_text
                .split(',')
                .map(|v| number("voters", v))
                .collect::<std::result::Result<Vec<_>, _>>()?
        };
        let anchor_text = field("anchor")?;
        let parts: Vec<&str> = anchor_text.split(' ').collect();
        let [index, term_a, offset] = parts[..] else {
            return Err(format!(
                "anchor: expected index term offset, found {anchor_text:?}"
            ));
        };
        if lines.next().is_some() {
            return Err("trailing lines".into());
        }
        Ok(ReplicaStateFile {
            term,
            vote,
            commit,
            voters,
            anchor_index: number("anchor index", index)?,
            anchor_term: number("anchor term", term_a)?,
            anchor_offset: Offset(number("anchor offset", offset)?),
        })
    }
}

/// Reads `dir`'s replica state: `Ok(None)` when there is none (a new replica), an error when the
/// file is there but cannot be read or fails its checks.
pub fn load(dir: &Path) -> Result<Option<ReplicaStateFile>> {
    let path = dir.join(REPLICA_STATE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => ReplicaStateFile::decode(&text).map(Some).map_err(|e| {
            LogError::Config(format!(
                "{} is damaged ({e}); refusing to guess a Raft term and vote",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LogError::io("read", &path, e)),
    }
}

/// Replaces `dir`'s replica state durably (temporary file, `fdatasync`, rename, directory
/// `fsync`), with glommio I/O. Callers serialize the writes of one partition.
pub async fn store(dir: &Path, state: &ReplicaStateFile) -> Result<()> {
    replace_file(dir, REPLICA_STATE_FILE, state.encode().into_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ReplicaStateFile {
        ReplicaStateFile {
            term: 7,
            vote: 2,
            commit: 1234,
            voters: vec![1, 2, 3],
            anchor_index: 1000,
            anchor_term: 6,
            anchor_offset: Offset(98765),
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(ReplicaStateFile::decode(&s.encode()), Ok(s));
        let empty = ReplicaStateFile::default();
        assert_eq!(ReplicaStateFile::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let text = sample().encode();
        let bytes = text.as_bytes();
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.to_vec();
            b[i / 8] ^= 1 << (i % 8);
            if let Ok(t) = std::str::from_utf8(&b) {
                assert!(ReplicaStateFile::decode(t).is_err(), "bit {i}: {t:?}");
            }
        }
    }

    #[test]
    fn malformed_files_are_refused() {
        for text in ["", "1\n", "0\nterm 1\n", "2\nterm 1\n"] {
            assert!(ReplicaStateFile::decode(text).is_err(), "{text:?}");
        }
        let missing_anchor = seal("1\nterm 1\nvote 0\ncommit 0\nvoters 1\n".into());
        assert!(ReplicaStateFile::decode(&missing_anchor).is_err());
        let trailing = seal("1\nterm 1\nvote 0\ncommit 0\nvoters 1\nanchor 0 0 0\nx\n".into());
        assert!(ReplicaStateFile::decode(&trailing).is_err());
    }
}
