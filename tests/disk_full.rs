//! A disk error mid-append (here EFBIG from RLIMIT_FSIZE, which fails writes past a file size the
//! way a full disk fails them with ENOSPC) fails the affected appends with a typed error, loses no
//! acknowledged batch, keeps reads working, and appends resume once space is back. One test per
//! file: the limit applies to the whole process.

mod common;

use common::*;
use quill::disk::{LogConfig, LogError, PartitionLog};
use quill_proto::types::{Epoch, Offset};

#[test]
fn write_error_fails_appends_without_losing_acknowledged_data() {
    // Without this the kernel kills the process with SIGXFSZ instead of failing the write.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let dir = tmpdir();
    let path = dir.path().join("p0");
    let p2 = path.clone();
    let config = LogConfig {
        segment_bytes: 8 << 20,
        ..LogConfig::default()
    };
    let c2 = config.clone();
    let acked = run(move || async move {
        let (log, _) = PartitionLog::open(&p2, options(c2)).await.unwrap();
        set_fsize_limit(1 << 20);
        let mut acked = Vec::new();
        let mut failure = None;
        for i in 0..200u64 {
            let b = batch(i, 4, 5_000, 10);
            match log.append(b.clone(), Epoch(0)).await {
                Ok(info) => acked.push((info.base_offset, stamped(b, info.base_offset.0, 0))),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let err = failure.expect("the file size limit stops appends");
        assert!(matches!(err, LogError::Io { .. }), "{err}");
        assert_eq!(err.raw_os_error(), Some(libc::EFBIG), "{err}");
        assert!(!acked.is_empty());
        let end = acked.last().unwrap().0.plus(4);
        // Nothing past the acknowledged prefix is visible, and reads still work.
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(log.high_watermark(), end);
        for (base, bytes) in &acked {
            let r = log.read(*base, 1).await.unwrap();
            assert_eq!(&r.batches[0][..], &bytes[..]);
        }
        // Still full: the next append fails too, and is not acknowledged.
        assert!(log
            .append(batch(900, 4, 5_000, 10), Epoch(0))
            .await
            .is_err());
        assert_eq!(log.log_end_offset(), end);
        // Space is back: appends continue right after the acknowledged prefix.
        set_fsize_limit(libc::RLIM_INFINITY);
        let b = batch(901, 4, 5_000, 10);
        let info = log.append(b.clone(), Epoch(0)).await.unwrap();
        assert_eq!(info.base_offset, end);
        acked.push((end, stamped(b, end.0, 0)));
        log.close().await.unwrap();
        acked
    });
    run(move || async move {
        let (log, report) = PartitionLog::open(&path, options_no_cache(config))
            .await
            .unwrap();
        assert!(report.corrupt.is_empty());
        let got: Vec<(Offset, Vec<u8>)> = read_all(&log)
            .await
            .into_iter()
            .map(|(base, b)| (Offset(base), b))
            .collect();
        assert_eq!(got, acked);
    });
}
