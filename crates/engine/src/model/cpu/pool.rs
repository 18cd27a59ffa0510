//! A small thread pool for the kernels: the calling thread and `threads - 1` helpers claim task
//! indices from one shared counter.
//!
//! Decoding a token runs a few hundred short parallel sections (seven matrix products and an
//! attention per layer), each tens of microseconds long. Handing those to rayon from the engine
//! thread costs a wake-up of a sleeping worker and a sleep of the caller every time, which shows
//! up as a large share of decode time. Here the caller works too, and helpers spin for a short
//! while after each section before they park, so the next section starts without a system call.
//!
//! Results never depend on the schedule: every task computes fixed outputs with fixed
//! arithmetic, whichever thread claims it.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle helper spins before it parks.
const SPIN: Duration = Duration::from_micros(200);

/// One parallel section, on the caller's stack until every claimed task has finished.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    done: AtomicUsize,
    panicked: AtomicBool,
}

struct Pool {
    /// Generation, task count and next unclaimed task, packed (see [`pack`]) so that a claim is
    /// one compare-and-swap that also proves the generation is still current.
    state: AtomicU64,
    /// The current generation's job (valid while its tasks are unfinished).
    job: AtomicPtr<Job<'static>>,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    /// Held by the thread whose section is running; others run theirs inline.
    submit: Mutex<()>,
    helpers: usize,
}

/// Bits of the task count and of the next index in `state`; the generation takes the rest.
const TASK_BITS: u32 = 18;
/// Most tasks in one section.
pub const MAX_TASKS: usize = (1 << TASK_BITS) - 1;

fn pack(gen: u64, tasks: u64, next: u64) -> u64 {
    (gen << (2 * TASK_BITS)) | (tasks << TASK_BITS) | next
}

fn unpack(s: u64) -> (u64, u64, u64) {
    let mask = (1u64 << TASK_BITS) - 1;
    (s >> (2 * TASK_BITS), (s >> TASK_BITS) & mask, s & mask)
}

thread_local! {
    /// Set on helper threads and inside a running section: nested calls run inline.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let helpers = rayon::current_num_threads().saturating_sub(1);
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            state: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            submit: Mutex::new(()),
            helpers,
        }));
        for i in 0..helpers {
            std::thread::Builder::new()
                .name(format!("freeze-attn-cpu-{i}"))
                .spawn(move || helper(pool))
                .expect("spawning a kernel thread");
        }
        pool
    })
}

/// Threads that run a section (the caller included).
pub fn threads() -> usize {
    pool().helpers + 1
}

/// Runs `f(0..tasks)`, spread over the pool; returns when all have finished. Panics if a task
/// panicked.
pub fn run(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    let p = pool();
    if tasks <= 1 || p.helpers == 0 || INSIDE.get() {
        (0..tasks).for_each(f);
        return;
    }
    let Ok(_guard) = p.submit.try_lock() else {
        // Another thread's section is running: do this one alone rather than wait.
        (0..tasks).for_each(f);
        return;
    };
    assert!(tasks <= MAX_TASKS, "{tasks} tasks in one section");
    let job = Job {
        f,
        done: AtomicUsize::new(0),
        panicked: AtomicBool::new(false),
    };
    // SAFETY (lifetime): the job is only dereferenced by threads that claimed one of its tasks,
    // and we do not return before every claimed task has finished (`done == tasks`).
    let ptr = &job as *const Job as *mut Job<'static>;
    p.job.store(ptr, SeqCst);
    let gen = (unpack(p.state.load(SeqCst)).0 + 1) & (u64::MAX >> (2 * TASK_BITS));
    p.state.store(pack(gen, tasks as u64, 0), SeqCst);
    if p.sleepers.load(SeqCst) > 0 {
        let _l = p.lock.lock().unwrap_or_else(|e| e.into_inner());
        p.wake.notify_all();
    }
    INSIDE.set(true);
    work(p, gen);
    INSIDE.set(false);
    while job.done.load(Acquire) < tasks {
        std::hint::spin_loop();
    }
    if job.panicked.load(Relaxed) {
        panic!("a CPU kernel task panicked");
    }
}

/// Claims and runs tasks of generation `gen` until none is left.
fn work(p: &Pool, gen: u64) {
    loop {
        let s = p.state.load(Acquire);
        let (g, tasks, idx) = unpack(s);
        if g != gen || idx >= tasks {
            return;
        }
        if p.state.compare_exchange_weak(s, s + 1, AcqRel, Relaxed).is_err() {
            continue;
        }
        // SAFETY: we hold task `idx < tasks` of generation `gen`, so its caller is still waiting
        // for it and has not replaced the job (it was published before the generation).
        let job = unsafe { &*p.job.load(Acquire) };
        if catch_unwind(AssertUnwindSafe(|| (job.f)(idx as usize))).is_err() {
            job.panicked.store(true, Relaxed);
        }
        job.done.fetch_add(1, Release);
    }
}

fn helper(p: &'static Pool) {
    INSIDE.set(true);
    let mut seen = 0u64;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        let gen = loop {
            let gen = unpack(p.state.load(Acquire)).0;
            if gen != seen {
                break gen;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && start.elapsed() > SPIN {
                p.sleepers.fetch_add(1, SeqCst);
                let mut l = p.lock.lock().unwrap_or_else(|e| e.into_inner());
                while unpack(p.state.load(SeqCst)).0 == seen {
                    l = p.wake.wait(l).unwrap_or_else(|e| e.into_inner());
                }
                drop(l);
                p.sleepers.fetch_sub(1, SeqCst);
            }
            std::hint::spin_loop();
        };
        seen = gen;
        work(p, gen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_exactly_once_across_many_sections() {
        for round in 0..2000 {
            let n = 1 + round % 37;
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            run(n, &|i| {
                hits[i].fetch_add(1, Relaxed);
            });
            assert!(
                hits.iter().all(|h| h.load(Relaxed) == 1),
                "round {round}: each task runs once"
            );
        }
    }

    #[test]
    fn sections_from_several_threads_and_nested_sections_complete() {
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let total = AtomicUsize::new(0);
                        run(8, &|_| {
                            run(3, &|_| {
                                total.fetch_add(1, Relaxed);
                            })
                        });
                        assert_eq!(total.load(Relaxed), 24);
                    }
                });
            }
        });
    }
}
