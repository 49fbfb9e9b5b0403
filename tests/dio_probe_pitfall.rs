//! Why `quill::disk::probe::prime` exists: with glommio 0.9, when the first direct-I/O file a
//! process opens on a device is empty, every later read on that device fails with EOPNOTSUPP
//! (os error 95). If a glommio upgrade makes this test fail, the workaround can be retired.
//! One test per file: the probe result is cached per process.

mod common;

use common::*;
use glommio::io::OpenOptions;

#[test]
fn reads_fail_when_the_first_dma_file_is_empty() {
    let dir = tmpdir();
    let path = dir.path().join("empty.log");
    run(move || async move {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(&path)
            .await
            .unwrap();
        let mut b = f.alloc_dma_buffer(4096);
        b.as_bytes_mut().fill(7);
        assert_eq!(f.write_at(b, 0).await.unwrap(), 4096);
        let err = f.read_at(0, 4096).await.map(|r| r.len()).unwrap_err();
        let code = match &err {
            glommio::GlommioError::EnhancedIoError { source, .. } => source.raw_os_error(),
            _ => None,
        };
        assert_eq!(code, Some(libc::EOPNOTSUPP), "{err}");
    });
}
