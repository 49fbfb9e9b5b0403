//! The fetch paths measured, each from a fixture to a sample, and the system counters they read.

use super::*;

/// CPU counters and the device's read counter at the start of a variant.
pub(super) struct Meter {
    start: Instant,
    cpu: CpuTimes,
    disk: Option<u64>,
    device: Option<PathBuf>,
}

impl Meter {
    fn start(fx: &Fixture) -> Meter {
        Meter {
            disk: fx.device.as_deref().and_then(sectors_read_bytes),
            device: fx.device.clone(),
            cpu: CpuTimes::now(),
            start: Instant::now(),
        }
    }

    /// A sample with the CPU and disk figures filled in; bytes, fetches, latency and elapsed
    /// are the caller's.
    fn finish(&self, hist: &Histogram<u64>) -> Sample {
        let cpu = CpuTimes::now();
        let disk = self.device.as_deref().and_then(sectors_read_bytes);
        Sample {
            latency: LatencySummary::of(hist),
            exec_cpu: cpu.thread.saturating_sub(self.cpu.thread),
            process_cpu: cpu.process.saturating_sub(self.cpu.process),
            disk_read_bytes: self.disk.zip(disk).map(|(a, b)| b.saturating_sub(a)),
            ..Sample::default()
        }
    }
}

/// Sequential aligned O_DIRECT reads of the whole segment, `depth` in flight.
pub(super) async fn raw_read(fx: &Fixture, depth: usize) -> Result<Sample> {
    let path = &fx.segment;
    let file = Rc::new(
        DmaFile::open(path)
            .await
            .with_context(|| format!("open {}", path.display()))?,
    );
    let len = fx.log_bytes;
    let next = Rc::new(Cell::new(0u64));
    let meter = Meter::start(fx);
    let workers: Vec<_> = (0..depth)
        .map(|_| {
            let file = file.clone();
            let next = next.clone();
            glommio::spawn_local(async move {
                let mut hist = latency_histogram();
                let (mut bytes, mut reads) = (0u64, 0u64);
                loop {
                    let pos = next.get();
                    if pos >= len {
                        return Ok::<_, PerfError>((hist, bytes, reads));
                    }
                    next.set(pos + RAW_READ_BLOCK_BYTES as u64);
                    let want = (len - pos).min(RAW_READ_BLOCK_BYTES as u64);
                    let aligned = want.div_ceil(RAW_READ_ALIGN_BYTES) * RAW_READ_ALIGN_BYTES;
                    let t = Instant::now();
                    let got = file
                        .read_at_aligned(pos, aligned as usize)
                        .await
                        .context("direct read")?;
                    record_latency(&mut hist, t.elapsed());
                    if (got.len() as u64) < want {
                        return Err(PerfError::msg(format!(
                            "short direct read at {pos}: {} of {want} bytes",
                            got.len()
                        )));
                    }
                    bytes += want;
                    reads += 1;
                }
            })
        })
        .collect();
    let mut hist = latency_histogram();
    let (mut bytes, mut reads) = (0, 0);
    let mut first_err = None;
    for w in workers {
        match w.await {
            Ok((h, b, n)) => {
                hist.add(&h)
                    .map_err(|e| PerfError::new("merge histograms", e))?;
                bytes += b;
                reads += n;
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let elapsed = meter.start.elapsed();
    let mut s = meter.finish(&hist);
    let closed = file.close_rc().await.context("close the segment");
    if let Some(e) = first_err {
        return Err(e);
    }
    closed?;
    s.bytes = bytes;
    s.fetches = reads;
    s.elapsed = elapsed;
    Ok(s)
}

/// One buffer written `log_bytes / fetch_bytes` times to the glommio socket.
pub(super) async fn socket_only(fx: &Fixture, fetch_bytes: usize) -> Result<Sample> {
    let mut buf = vec![0u8; fetch_bytes];
    crate::rawdisk::fill_pseudo_random(&mut buf, 3);
    let sink = Sink::start()?;
    let mut stream = TcpStream::connect(sink.addr)
        .await
        .context("connect to the consumer")?;
    let mut hist = latency_histogram();
    let meter = Meter::start(fx);
    let mut sent = 0u64;
    let mut writes = 0u64;
    while sent < fx.log_bytes {
        let n = (fx.log_bytes - sent).min(fetch_bytes as u64) as usize;
        let t = Instant::now();
        stream.write_all(&buf[..n]).await.context("socket write")?;
        record_latency(&mut hist, t.elapsed());
        sent += n as u64;
        writes += 1;
    }
    stream.close().await.context("close the socket")?;
    drop(stream);
    sink.finish(meter, &hist, sent, writes)
}

/// The broker's read path: `PartitionLog::read` from offset 0 to the end, every batch written to
/// the glommio socket with `write_all`.
pub(super) async fn log_fetches(
    log: &PartitionLog,
    fx: &Fixture,
    fetch_bytes: usize,
) -> Result<Sample> {
    let sink = Sink::start()?;
    let mut stream = TcpStream::connect(sink.addr)
        .await
        .context("connect to the consumer")?;
    let end = log.log_end_offset();
    let mut hist = latency_histogram();
    let meter = Meter::start(fx);
    let mut from = Offset(0);
    let mut sent = 0u64;
    let mut fetches = 0u64;
    while from < end {
        let t = Instant::now();
        let r = log.read(from, fetch_bytes).await.context("log read")?;
        for b in &r.batches {
            stream.write_all(b).await.context("socket write")?;
            sent += b.len() as u64;
        }
        record_latency(&mut hist, t.elapsed());
        from = next_offset(&r.batches)?;
        fetches += 1;
    }
    stream.close().await.context("close the socket")?;
    drop(stream);
    sink.finish(meter, &hist, sent, fetches)
}

/// What a sendfile variant does to the page cache before it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PageCache {
    /// Drop the segment's pages, so every read is cold.
    Evict,
    /// Drop them and turn readahead off on the descriptor.
    EvictNoReadahead,
    /// Leave whatever is cached.
    Keep,
}

/// `sendfile(2)` of the segment in byte ranges of `fetch_bytes`, each range one call to the
/// executor's blocking thread pool.
pub(super) async fn sendfile_fetches(
    fx: &Fixture,
    fetch_bytes: usize,
    cache: PageCache,
) -> Result<Sample> {
    let path = &fx.segment;
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut advice = Vec::new();
    if cache != PageCache::Keep {
        advice.push((libc::POSIX_FADV_DONTNEED, "posix_fadvise(DONTNEED)"));
    }
    if cache == PageCache::EvictNoReadahead {
        advice.push((libc::POSIX_FADV_RANDOM, "posix_fadvise(RANDOM)"));
    }
    for (a, what) in advice {
        // SAFETY: a valid descriptor; DONTNEED only drops clean cached pages, RANDOM only changes
        // this descriptor's readahead.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, a) };
        if rc != 0 {
            return Err(PerfError::new(what, std::io::Error::from_raw_os_error(rc)));
        }
    }
    let resident = resident_fraction(&file, fx.log_bytes)?;
    let sink = Sink::start()?;
    // A blocking socket: the sendfile calls run on a thread that may block.
    let sock = StdStream::connect(sink.addr).context("connect to the consumer")?;
    let (sock_fd, file_fd): (RawFd, RawFd) = (sock.as_raw_fd(), file.as_raw_fd());
    let mut hist = latency_histogram();
    let mut blocking_cpu = Duration::ZERO;
    let meter = Meter::start(fx);
    let mut pos = 0u64;
    let mut fetches = 0u64;
    while pos < fx.log_bytes {
        let len = (fx.log_bytes - pos).min(fetch_bytes as u64);
        let t = Instant::now();
        // `sock` and `file` outlive the call: it is awaited before the next and before they drop.
        let cpu = glommio::executor()
            .spawn_blocking(move || sendfile_range(sock_fd, file_fd, pos, len))
            .await
            .context("sendfile")?;
        record_latency(&mut hist, t.elapsed());
        blocking_cpu += cpu;
        pos += len;
        fetches += 1;
    }
    sock.shutdown(Shutdown::Write)
        .context("shut down the socket")?;
    drop(sock);
    let mut s = sink.finish(meter, &hist, pos, fetches)?;
    s.blocking_cpu = blocking_cpu;
    s.resident_before = Some(resident);
    Ok(s)
}

/// Sends `len` bytes of `file` from `pos` to `sock`, looping over partial sends. Runs on a
/// blocking-pool thread; returns that thread's CPU time spent.
pub(super) fn sendfile_range(
    sock: RawFd,
    file: RawFd,
    pos: u64,
    len: u64,
) -> std::io::Result<Duration> {
    let cpu0 = thread_cpu();
    let end = pos + len;
    let mut off = pos as libc::off_t;
    while (off as u64) < end {
        let want = (end - off as u64) as usize;
        // SAFETY: both descriptors are open for the duration of the call (see the caller); `off`
        // is a valid out-parameter that sendfile advances by the bytes sent.
        let rc = unsafe { libc::sendfile(sock, file, &mut off, want) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if rc == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("segment ended at {off}, before {end}"),
            ));
        }
    }
    Ok(thread_cpu().saturating_sub(cpu0))
}

/// The consumer: a std thread that accepts one connection on 127.0.0.1 and reads it to EOF.
pub(super) struct Sink {
    addr: SocketAddr,
    thread: JoinHandle<std::io::Result<SinkTally>>,
}

pub(super) struct SinkTally {
    bytes: u64,
    last_byte: Instant,
    cpu: Duration,
}

impl Sink {
    fn start() -> Result<Sink> {
        let listener = StdListener::bind("127.0.0.1:0").context("bind the consumer's socket")?;
        let addr = listener.local_addr().context("consumer address")?;
        let thread = std::thread::Builder::new()
            .name("fetch-consumer".into())
            .spawn(move || {
                // Threads inherit the creator's affinity: undo the executor's pinning.
                unpin_current_thread();
                let (mut s, _) = listener.accept()?;
                let cpu0 = thread_cpu();
                let mut buf = vec![0u8; SINK_BUFFER_BYTES];
                let mut bytes = 0u64;
                let mut last_byte = Instant::now();
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            bytes += n as u64;
                            last_byte = Instant::now();
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(SinkTally {
                    bytes,
                    last_byte,
                    cpu: thread_cpu().saturating_sub(cpu0),
                })
            })
            .context("start the consumer thread")?;
        Ok(Sink { addr, thread })
    }

    /// Waits for the consumer to see EOF (the sender has closed its socket) and completes the
    /// sample: elapsed runs to the consumer's last byte.
    fn finish(
        self,
        meter: Meter,
        hist: &Histogram<u64>,
        sent: u64,
        fetches: u64,
    ) -> Result<Sample> {
        let tally = self
            .thread
            .join()
            .map_err(|_| PerfError::msg("the consumer thread panicked"))?
            .context("consumer read")?;
        let mut s = meter.finish(hist);
        if tally.bytes != sent {
            return Err(PerfError::msg(format!(
                "consumer received {} bytes of {sent}",
                tally.bytes
            )));
        }
        s.bytes = sent;
        s.fetches = fetches;
        s.elapsed = tally.last_byte.saturating_duration_since(meter.start);
        s.sink_cpu = tally.cpu;
        Ok(s)
    }
}

/// User plus system CPU time of the calling thread.
pub(super) fn thread_cpu() -> Duration {
    // SAFETY: `ru` is a properly sized out-parameter; getrusage only writes to it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Lets the calling thread run on any CPU.
pub(super) fn unpin_current_thread() {
    // SAFETY: `set` is a properly initialised cpu_set_t; CPUs that do not exist are ignored by
    // the kernel as long as one does.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The share of `file`'s pages (its first `len` bytes) in the page cache, from `mincore(2)`.
pub(super) fn resident_fraction(file: &std::fs::File, len: u64) -> Result<f64> {
    if len == 0 {
        return Ok(0.0);
    }
    // SAFETY: a read-only shared mapping of an open file, unmapped before returning; `vec` has
    // one byte per page of the mapping as mincore requires.
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE) as u64;
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        if addr == libc::MAP_FAILED {
            return Err(PerfError::new("mmap", std::io::Error::last_os_error()));
        }
        let pages = len.div_ceil(page) as usize;
        let mut vec = vec![0u8; pages];
        let rc = libc::mincore(addr, len as usize, vec.as_mut_ptr());
        let err = std::io::Error::last_os_error();
        libc::munmap(addr, len as usize);
        if rc != 0 {
            return Err(PerfError::new("mincore", err));
        }
        let resident = vec.iter().filter(|&&b| b & 1 != 0).count();
        Ok(resident as f64 / pages as f64)
    }
}

/// `/sys/dev/block/<major>:<minor>/stat` of the device holding `dir`, if it exists.
pub(super) fn block_device_stat(dir: &Path) -> Option<PathBuf> {
    let dev = std::fs::metadata(dir).ok()?.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let p = PathBuf::from(format!("/sys/dev/block/{major}:{minor}/stat"));
    sectors_read_bytes(&p).map(|_| p)
}

/// Bytes read by a block device so far: its third stat field counts 512-byte sectors.
pub(super) fn sectors_read_bytes(stat: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(stat).ok()?;
    let sectors: u64 = text.split_whitespace().nth(2)?.parse().ok()?;
    Some(sectors * 512)
}
