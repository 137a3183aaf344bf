//! Runs the core's future for one request to completion on the core thread.
//!
//! Design decision: a purpose-built `block_on` that parks the core thread until the future's
//! waker is called. The native stores are synchronous (SQLite, memory), so every future the core
//! builds over them is ready the first time it is polled and the park never happens in practice;
//! if a future ever does wait (a store doing real I/O), the thread sleeps instead of spinning.
//!
//! Rejected alternatives: a Tokio runtime on the core thread (the core's futures are not `Send`
//! and never wait on Tokio I/O; a runtime would add a scheduler to every request for nothing),
//! and `store::conformance::block_on`, a test helper that polls in a busy loop with a no-op
//! waker (a waiting future would spin a core at 100 %).

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

/// Wakes the thread that runs the future.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// An executor bound to the thread that made it (the core thread).
pub struct Blocking {
    waker: Waker,
}

impl Blocking {
    /// An executor for the calling thread.
    pub fn for_this_thread() -> Self {
        Blocking {
            waker: Waker::from(Arc::new(Unpark(std::thread::current()))),
        }
    }

    /// Polls `fut` until it is ready, parking the thread while it waits.
    pub fn run<F: Future>(&self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let mut cx = Context::from_waker(&self.waker);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            // A spurious unpark only costs one more poll.
            std::thread::park();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Pending until another thread sets the flag and wakes it.
    struct Later {
        done: Arc<AtomicBool>,
        started: bool,
    }

    impl Future for Later {
        type Output = u32;
        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            if self.done.load(Ordering::SeqCst) {
                return Poll::Ready(7);
            }
            if !self.started {
                self.started = true;
                let (done, waker) = (self.done.clone(), cx.waker().clone());
                std::thread::spawn(move || {
                    done.store(true, Ordering::SeqCst);
                    waker.wake();
                });
            }
            Poll::Pending
        }
    }

    #[test]
    fn a_ready_future_runs_at_once_and_a_waiting_one_after_its_wake() {
        let exec = Blocking::for_this_thread();
        assert_eq!(exec.run(async { 3 }), 3);
        let later = Later {
            done: Arc::new(AtomicBool::new(false)),
            started: false,
        };
        assert_eq!(exec.run(later), 7);
    }
}
