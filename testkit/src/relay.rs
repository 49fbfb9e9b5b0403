//! A fault-injecting UDP relay for process tests of the replication transport (QUIC over UDP).
//!
//! A [`Relay`] listens on a *front* address and forwards every datagram to one *target* (a
//! node's real replication address). Each source seen on the front gets its own upstream socket,
//! so the target sees one address per source and its replies go back through the relay to that
//! source. On the way, in both directions, the relay can drop, delay, duplicate, or *cut*
//! datagrams; the controls change at run time from the test thread. Decisions are drawn from a
//! seeded generator in the order datagrams arrive, so a seed fixes the decisions though not the
//! arrival order. The relay runs on its own thread and stops when dropped.
//!
//! # Recipe: three brokers behind relays
//!
//! ```text
//! real_i  = node i's own replication address (what it binds)
//! relay_i = Relay::start(real_i, seed)            // front_i forwards to real_i
//! node i's --peers:  i=real_i, and j=front_j for every other node j
//! ```
//!
//! Node i dials node j through `relay_j`, from its own socket, so `relay_j` sees `real_i` as
//! the source. To isolate node k, cut `real_k` on every relay: `relay_k` then drops all that
//! reaches node k (its target is `real_k`) and every other relay drops what node k sends
//! (its source is `real_k`). Heal with [`Relay::heal`] on the same relays.
//!
//! ```no_run
//! # use quill_testkit::relay::Relay;
//! # fn main() -> std::io::Result<()> {
//! let real: Vec<std::net::SocketAddr> = vec![/* the nodes' bound addresses */];
//! let relays: Vec<Relay> = real.iter().map(|a| Relay::start(*a, 7)).collect::<Result<_, _>>()?;
//! for r in &relays { r.cut(real[2]); }   // node 3 alone
//! for r in &relays { r.heal(real[2]); }  // back
//! relays[0].set_drop_probability(0.1);   // 10 % loss into node 1
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::UdpSocket;

/// Sources one relay keeps an upstream socket for; datagrams from further sources are dropped.
pub const RELAY_SOURCES_MAX: usize = 256;
/// The largest datagram relayed, in bytes (QUIC sends at most ~1500 on loopback by default).
pub const RELAY_DATAGRAM_BYTES_MAX: usize = 65_535;

/// What the relay does to datagrams, changeable at run time.
#[derive(Debug)]
struct Controls {
    drop_probability: f64,
    duplicate_probability: f64,
    delay_ms: u64,
    /// Real addresses whose datagrams (as source or destination) are dropped.
    cut: HashSet<SocketAddr>,
    rng: SplitMix64,
}

/// What happened to the datagrams so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Datagrams passed on (a duplicate counts once more).
    pub forwarded: u64,
    /// Dropped by the drop probability.
    pub dropped: u64,
    /// Dropped because an address was cut.
    pub cut: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Dropped because [`RELAY_SOURCES_MAX`] sources were already mapped.
    pub unmapped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    forwarded: AtomicU64,
    dropped: AtomicU64,
    cut: AtomicU64,
    duplicated: AtomicU64,
    unmapped: AtomicU64,
}

/// A running relay; dropping it stops it.
#[derive(Debug)]
pub struct Relay {
    front: SocketAddr,
    target: SocketAddr,
    controls: Arc<Mutex<Controls>>,
    counters: Arc<Counters>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// A relay to `target` listening on a free port of 127.0.0.1.
    pub fn start(target: SocketAddr, seed: u64) -> std::io::Result<Relay> {
        Relay::start_on("127.0.0.1:0".parse().expect("an address"), target, seed)
    }

    /// A relay to `target` listening on `front`.
    pub fn start_on(front: SocketAddr, target: SocketAddr, seed: u64) -> std::io::Result<Relay> {
        let socket = std::net::UdpSocket::bind(front)?;
        socket.set_nonblocking(true)?;
        let front = socket.local_addr()?;
        let controls = Arc::new(Mutex::new(Controls {
            drop_probability: 0.0,
            duplicate_probability: 0.0,
            delay_ms: 0,
            cut: HashSet::new(),
            rng: SplitMix64(seed),
        }));
        let counters = Arc::new(Counters::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (c, k) = (controls.clone(), counters.clone());
        let thread = std::thread::Builder::new()
            .name(format!("relay-{front}"))
            .spawn(move || {
                let state = Rc::new(State {
                    target,
                    controls: c,
                    counters: k,
                });
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, run(state, socket, stop_rx));
            })?;
        Ok(Relay {
            front,
            target,
            controls,
            counters,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address to give the nodes instead of the target's.
    pub fn front_addr(&self) -> SocketAddr {
        self.front
    }

    /// The address datagrams are forwarded to.
    pub fn target_addr(&self) -> SocketAddr {
        self.target
    }

    /// Drops each datagram (either direction) with probability `p` (0.0 to 1.0).
    pub fn set_drop_probability(&self, p: f64) {
        assert!((0.0..=1.0).contains(&p), "a probability: {p}");
        self.controls.lock().unwrap().drop_probability = p;
    }

    /// Sends each datagram twice with probability `p` (0.0 to 1.0).
    pub fn set_duplicate_probability(&self, p: f64) {
        assert!((0.0..=1.0).contains(&p), "a probability: {p}");
        self.controls.lock().unwrap().duplicate_probability = p;
    }

    /// Holds each datagram `ms` milliseconds before passing it on.
    pub fn set_delay_ms(&self, ms: u64) {
        self.controls.lock().unwrap().delay_ms = ms;
    }

    /// Drops every datagram from or to the real address `addr` (a source seen on the front, or
    /// the target) until [`Relay::heal`].
    pub fn cut(&self, addr: SocketAddr) {
        self.controls.lock().unwrap().cut.insert(addr);
    }

    /// Undoes [`Relay::cut`] of `addr`.
    pub fn heal(&self, addr: SocketAddr) {
        self.controls.lock().unwrap().cut.remove(&addr);
    }

    /// Undoes every cut.
    pub fn heal_all(&self) {
        self.controls.lock().unwrap().cut.clear();
    }

    /// The counters so far.
    pub fn stats(&self) -> RelayStats {
        let c = &self.counters;
        RelayStats {
            forwarded: c.forwarded.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            cut: c.cut.load(Relaxed),
            duplicated: c.duplicated.load(Relaxed),
            unmapped: c.unmapped.load(Relaxed),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the relay's tasks share, on its thread.
struct State {
    target: SocketAddr,
    controls: Arc<Mutex<Controls>>,
    counters: Arc<Counters>,
}

/// What to do with one datagram.
struct Verdict {
    copies: u32,
    delay: Duration,
}

impl State {
    fn decide(&self, from: SocketAddr, to: SocketAddr) -> Verdict {
        let mut c = self.controls.lock().unwrap();
        let none = Verdict {
            copies: 0,
            delay: Duration::ZERO,
        };
        if c.cut.contains(&from) || c.cut.contains(&to) {
            self.counters.cut.fetch_add(1, Relaxed);
            return none;
        }
        let (drop_p, dup_p) = (c.drop_probability, c.duplicate_probability);
        // Always two draws, so one control's change does not shift the other's sequence.
        let (d, u) = (c.rng.next_f64(), c.rng.next_f64());
        if d < drop_p {
            self.counters.dropped.fetch_add(1, Relaxed);
            return none;
        }
        let copies = if u < dup_p {
            self.counters.duplicated.fetch_add(1, Relaxed);
            2
        } else {
            1
        };
        self.counters.forwarded.fetch_add(copies as u64, Relaxed);
        Verdict {
            copies,
            delay: Duration::from_millis(c.delay_ms),
        }
    }
}

/// Where a datagram goes: upstream to the target, or back to a source through the front.
#[derive(Clone)]
enum Dest {
    Upstream(Rc<UdpSocket>),
    Back(Rc<UdpSocket>, SocketAddr),
}

async fn send(dest: &Dest, data: &[u8]) {
    // A send error (the target is gone) is a lost datagram, which is what UDP promises anyway.
    let _ = match dest {
        Dest::Upstream(s) => s.send(data).await,
        Dest::Back(s, to) => s.send_to(data, *to).await,
    };
}

fn pass(verdict: Verdict, dest: Dest, data: &[u8]) {
    if verdict.copies == 0 {
        return;
    }
    let data = data.to_vec();
    if verdict.delay.is_zero() {
        // Sent from a task too, but without a timer, so order is kept.
        tokio::task::spawn_local(async move {
            for _ in 0..verdict.copies {
                send(&dest, &data).await;
            }
        });
    } else {
        tokio::task::spawn_local(async move {
            tokio::time::sleep(verdict.delay).await;
            for _ in 0..verdict.copies {
                send(&dest, &data).await;
            }
        });
    }
}

async fn run(
    state: Rc<State>,
    socket: std::net::UdpSocket,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let front = match UdpSocket::from_std(socket) {
        Ok(s) => Rc::new(s),
        Err(_) => return,
    };
    let mut upstreams: HashMap<SocketAddr, Rc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; RELAY_DATAGRAM_BYTES_MAX];
    loop {
        let (n, src) = tokio::select! {
            _ = &mut stop => return,
            r = front.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(_) => continue,
            },
        };
        let up = match upstreams.get(&src) {
            Some(up) => up.clone(),
            None => {
                if upstreams.len() >= RELAY_SOURCES_MAX {
                    state.counters.unmapped.fetch_add(1, Relaxed);
                    continue;
                }
                let Ok(up) = upstream(state.target).await else {
                    continue;
                };
                let up = Rc::new(up);
                upstreams.insert(src, up.clone());
                tokio::task::spawn_local(back(state.clone(), up.clone(), front.clone(), src));
                up
            }
        };
        let v = state.decide(src, state.target);
        pass(v, Dest::Upstream(up), &buf[..n]);
    }
}

async fn upstream(target: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind("127.0.0.1:0").await?;
    s.connect(target).await?;
    Ok(s)
}

/// Carries the target's replies to one source back through the front.
async fn back(state: Rc<State>, up: Rc<UdpSocket>, front: Rc<UdpSocket>, src: SocketAddr) {
    let mut buf = vec![0u8; RELAY_DATAGRAM_BYTES_MAX];
    loop {
        let n = match up.recv(&mut buf).await {
            Ok(n) => n,
            // ECONNREFUSED from an ICMP error while the target is down: keep listening.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let v = state.decide(state.target, src);
        pass(v, Dest::Back(front.clone(), src), &buf[..n]);
    }
}

/// A small seeded generator (SplitMix64): enough for fault decisions, no dependency.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket as StdUdp;

    fn echo_target() -> (StdUdp, SocketAddr) {
        let s = StdUdp::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let a = s.local_addr().unwrap();
        (s, a)
    }

    #[test]
    fn forwards_both_ways_through_a_per_source_socket() {
        let (target, taddr) = echo_target();
        let relay = Relay::start(taddr, 1).unwrap();
        let client = StdUdp::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.send_to(b"ping", relay.front_addr()).unwrap();
        let mut buf = [0u8; 16];
        let (n, via) = target.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert_ne!(
            via,
            client.local_addr().unwrap(),
            "the relay's own upstream socket"
        );
        target.send_to(b"pong", via).unwrap();
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"pong"[..], relay.front_addr()));
        assert_eq!(relay.stats().forwarded, 2);
    }

    #[test]
    fn cut_drops_both_directions_until_healed() {
        let (target, taddr) = echo_target();
        target
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let relay = Relay::start(taddr, 1).unwrap();
        let client = StdUdp::bind("127.0.0.1:0").unwrap();
        relay.cut(client.local_addr().unwrap());
        client.send_to(b"lost", relay.front_addr()).unwrap();
        let mut buf = [0u8; 16];
        assert!(target.recv_from(&mut buf).is_err());
        assert_eq!(relay.stats().cut, 1);
        relay.heal(client.local_addr().unwrap());
        client.send_to(b"kept", relay.front_addr()).unwrap();
        let (n, _) = target.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"kept");
    }

    #[test]
    fn the_same_seed_makes_the_same_decisions() {
        let draw = |seed| {
            let mut r = SplitMix64(seed);
            (0..100).map(|_| r.next_f64() < 0.3).collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
        let drops = draw(5).iter().filter(|d| **d).count();
        assert!((15..=45).contains(&drops), "{drops} of 100 at p=0.3");
    }
}
