//! What a policy call is charged for: the CPU time of the calling thread, not the wall clock.
//!
//! A hook's `deadline-ms` is a budget of the policy's own work. On a busy machine a call can
//! wait for a core far longer than it runs, and a wall-clock deadline would fail a policy for
//! the machine's load. So the epoch callback (on the calling thread, each time the deadline
//! ticks) charges the thread's CPU time since the call began, less host work the policy did not
//! cause ([`uncharged`]: key derivation, first-use initialisation), and interrupts the call when
//! that passes the deadline. The wall clock stays as a generous backstop ([`backstop`]) for a
//! call that is somehow never on a CPU long enough to be measured.
//!
//! Reading a thread's CPU clock is a system call (about a microsecond here), several times the
//! cost of a whole short policy call, so it is read lazily: a call is armed to be checked at the
//! next epoch tick, and most calls end before that. The first check anchors the CPU clock; what
//! ran before the anchor is charged at most one tick, the time the anchor can lag behind the
//! start of the call. Host work of a size the policy chooses (counting the tokens of a long text)
//! anchors the clock before it starts ([`anchor_before_costly_work`]), so it is charged in full.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

/// How often the epoch advances: how often a running policy call is checked against its limit
/// (the engine's ticker advances it).
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The wall-clock backstop of a call whose CPU limit is `limit`: ten times the limit, and at
/// least one second, so that a starved thread on a loaded machine is never failed by it.
pub fn backstop(limit: Duration) -> Duration {
    limit.saturating_mul(10).max(Duration::from_secs(1))
}

/// The CPU time the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

thread_local! {
    /// CPU and wall time this thread spent in [`uncharged`] work, ever (monotonic).
    static UNCHARGED: Cell<(Duration, Duration)> = const { Cell::new((Duration::ZERO, Duration::ZERO)) };
    /// The meter of the policy call under way on this thread: policy calls are synchronous,
    /// and wasmtime runs the epoch callback on the thread that runs the guest.
    static CURRENT: RefCell<Option<Meter>> = const { RefCell::new(None) };
}

/// Run host work that a policy call may trigger but did not cause (deriving a key the first
/// time a secret is read, loading a vocabulary once per process), without charging it to the
/// policy call under way on this thread, if any.
pub fn uncharged<T>(work: impl FnOnce() -> T) -> T {
    let (cpu0, wall0) = (thread_cpu_time(), Instant::now());
    let out = work();
    let (cpu, wall) = (thread_cpu_time().saturating_sub(cpu0), wall0.elapsed());
    UNCHARGED.with(|u| {
        let (c, w) = u.get();
        u.set((c + cpu, w + wall));
    });
    out
}

fn uncharged_so_far() -> (Duration, Duration) {
    UNCHARGED.with(Cell::get)
}

/// Which limit a call ran past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overrun {
    /// Its CPU time passed the limit.
    Cpu,
    /// The wall clock passed the backstop.
    Wall,
}

/// The meter of one policy call.
#[derive(Debug, Clone, Copy)]
struct Meter {
    limit: Duration,
    backstop: Duration,
    started: Instant,
    /// Uncharged CPU and wall time of this thread when the call started.
    uncharged_at_start: (Duration, Duration),
    /// The thread's CPU clock at the anchor, what was charged for the time before it, and the
    /// thread's uncharged CPU time then.
    anchor: Option<Anchor>,
    overrun: Option<Overrun>,
}

#[derive(Debug, Clone, Copy)]
struct Anchor {
    cpu: Duration,
    before: Duration,
    uncharged: Duration,
}

impl Meter {
    fn start(limit: Duration) -> Meter {
        Meter {
            limit,
            backstop: backstop(limit),
            started: Instant::now(),
            uncharged_at_start: uncharged_so_far(),
            anchor: None,
            overrun: None,
        }
    }

    fn anchor(&mut self) -> Anchor {
        *self.anchor.get_or_insert_with(|| Anchor {
            cpu: thread_cpu_time(),
            before: self.started.elapsed().min(EPOCH_TICK),
            uncharged: uncharged_so_far().0,
        })
    }

    /// CPU time charged to the call so far.
    fn charged(&mut self) -> Duration {
        let a = self.anchor();
        let uncharged = uncharged_so_far().0.saturating_sub(a.uncharged);
        (a.before + thread_cpu_time().saturating_sub(a.cpu)).saturating_sub(uncharged)
    }

    fn check(&mut self) -> bool {
        if self.charged() > self.limit {
            self.overrun = Some(Overrun::Cpu);
            return false;
        }
        let waited = uncharged_so_far()
            .1
            .saturating_sub(self.uncharged_at_start.1);
        if self.started.elapsed().saturating_sub(waited) > self.backstop {
            self.overrun = Some(Overrun::Wall);
            return false;
        }
        true
    }
}

/// Run `call` (which enters the guest) as a policy call allowed `limit` of CPU time. Returns what
/// it returned and the limit it ran past, if the epoch callback ([`check`]) interrupted it.
pub fn metered<T>(limit: Duration, call: impl FnOnce() -> T) -> (T, Option<Overrun>) {
    /// Puts the previous meter back however `call` ends, a panic included.
    struct Restore(Option<Meter>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with_borrow_mut(|c| *c = previous);
        }
    }
    let _restore = Restore(CURRENT.with_borrow_mut(|c| c.replace(Meter::start(limit))));
    let out = call();
    let overrun = CURRENT.with_borrow(|c| c.and_then(|m| m.overrun));
    (out, overrun)
}

/// The epoch callback's question: may the policy call under way on this thread go on? A guest
/// running outside [`metered`] may not.
pub fn check() -> bool {
    CURRENT.with_borrow_mut(|c| c.as_mut().is_some_and(Meter::check))
}

/// Host work whose cost grows with input the policy chose (counting the tokens of a long text)
/// calls this first, so the policy call under way is charged for all of it, not one tick.
pub fn anchor_before_costly_work() {
    CURRENT.with_borrow_mut(|c| {
        if let Some(m) = c.as_mut() {
            m.anchor();
        }
    });
}
