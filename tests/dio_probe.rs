//! glommio's poll-ring probe pitfall (see `src/disk/probe.rs`): a shard whose first direct-I/O
//! file on a device is an empty segment must still read back what it writes. This file holds one
//! test so that it runs in its own process, where the probe has not run yet.

mod common;

use common::*;
use quill::disk::PartitionLog;
use quill_proto::types::{Epoch, Offset};

#[test]
fn first_segment_on_an_empty_data_dir_reads_back_from_disk() {
    let dir = tmpdir();
    let path = dir.path().join("data").join("topic-0");
    run(move || async move {
        // The first DMA file this process opens is the new, empty segment (after the probe file
        // the log writes itself).
        let (log, _) = PartitionLog::open(&path, options_no_cache(small_config()))
            .await
            .unwrap();
        let b = batch(1, 3, 100, 10);
        log.append(b.clone(), Epoch(0)).await.unwrap();
        // No cache: this read goes to the device.
        let r = log.read(Offset(0), 1 << 20).await.expect("read from disk");
        assert_eq!(r.batches.len(), 1);
        assert_eq!(&r.batches[0][..], &stamped(b, 0, 0)[..]);
        log.close().await.unwrap();
    });
}
