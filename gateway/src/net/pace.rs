//! How fast a peer must send once it has started, and how long it may say
//! nothing at all.
//!
//! An idle timer that any byte resets lets one byte a second hold a
//! connection for ever, so [`Pace`] measures three things instead:
//!
//! - **Frame deadline.** The first byte after the last completed unit (an
//!   MLLP frame, an ASTM transfer from `ENQ` to `EOT`; the listener says
//!   when one is complete with [`Pace::completed`]) starts a frame, and the
//!   frame must be complete within `frame_deadline`.
//! - **Minimum data rate.** While the peer has the turn (from its first byte
//!   until we write to it, or the unit is complete), every `rate_window` of
//!   it must carry at least `min_rate × rate_window` bytes. A frame that
//!   arrives quickly is never measured; a frame trickled in is cut at the
//!   end of the first window. Our own writes end the peer's turn, so the
//!   time an analyzer waits for our `ACK` and thinks before its next frame
//!   is not counted against it, only the frame deadline is.
//! - **Idle.** Nothing completed, and no frame open, for `idle`: bytes
//!   alone do not count, only completed units do.
//!
//! [`Paced`] wraps a stream and enforces these on every read, failing it
//! with an error carrying the [`Cut`]'s reason ([`Cut::of`]); the listener
//! keeps a [`PaceHandle`] to report completed units.

use super::Reason;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A listener's pacing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaceLimits {
    pub idle: Duration,
    pub frame_deadline: Duration,
    /// Bytes per second; 0 turns the rate check off.
    pub min_rate: u64,
    pub rate_window: Duration,
}

/// Why a connection was cut, as the error of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection cut: {0}")]
pub struct Cut(pub Reason);

impl Cut {
    /// The reason, when `e` is a cut.
    pub fn of(e: &io::Error) -> Option<Reason> {
        e.get_ref()?.downcast_ref::<Cut>().map(|c| c.0)
    }
}

impl From<Cut> for io::Error {
    fn from(c: Cut) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, c)
    }
}

/// The pacing state of one connection; time is an input.
#[derive(Debug, Clone)]
pub struct Pace {
    limits: PaceLimits,
    last_progress: Instant,
    frame_started: Option<Instant>,
    /// The peer's turn: the start of its current window and the bytes in it.
    turn: Option<(Instant, u64)>,
    /// Cut from outside (the connection was displaced).
    forced: Option<Cut>,
    /// The read waiting on the stream, woken by a forced cut.
    waker: Option<std::task::Waker>,
}

impl Pace {
    pub fn new(limits: PaceLimits, now: Instant) -> Self {
        Pace {
            limits,
            last_progress: now,
            frame_started: None,
            turn: None,
            forced: None,
            waker: None,
        }
    }

    /// `n` bytes arrived at `now`.
    pub fn received(&mut self, n: usize, now: Instant) -> Result<(), Cut> {
        self.check(now)?;
        if n == 0 {
            return Ok(());
        }
        self.frame_started.get_or_insert(now);
        let turn = self.turn.get_or_insert((now, 0));
        turn.1 = turn.1.saturating_add(n as u64);
        Ok(())
    }

    /// We wrote to the peer: its turn is over (the frame goes on).
    pub fn wrote(&mut self) {
        self.turn = None;
    }

    /// The unit the peer was sending is complete.
    pub fn completed(&mut self, now: Instant) {
        if self.frame_started.is_some() || self.turn.is_some() {
            self.frame_started = None;
            self.turn = None;
            self.last_progress = now;
        }
    }

    /// Whether a frame has started and is not complete.
    pub fn in_frame(&self) -> bool {
        self.frame_started.is_some()
    }

    fn needed_per_window(&self) -> u64 {
        (self.limits.min_rate as f64 * self.limits.rate_window.as_secs_f64()).ceil() as u64
    }

    /// Whether the connection may go on at `now`.
    pub fn check(&mut self, now: Instant) -> Result<(), Cut> {
        if let Some(cut) = self.forced {
            return Err(cut);
        }
        if let Some(started) = self.frame_started {
            if now >= started + self.limits.frame_deadline {
                return Err(Cut(Reason::FrameDeadline));
            }
        } else if now >= self.last_progress + self.limits.idle {
            return Err(Cut(Reason::Idle));
        }
        if self.limits.min_rate > 0 && !self.limits.rate_window.is_zero() {
            let needed = self.needed_per_window();
            if let Some((start, bytes)) = &mut self.turn {
                while now >= *start + self.limits.rate_window {
                    if *bytes < needed {
                        return Err(Cut(Reason::TooSlow));
                    }
                    *start += self.limits.rate_window;
                    *bytes = 0;
                }
            }
        }
        Ok(())
    }

    /// When [`Pace::check`] may next fail.
    pub fn next_check(&self) -> Instant {
        let mut at = match self.frame_started {
            Some(started) => started + self.limits.frame_deadline,
            None => self.last_progress + self.limits.idle,
        };
        if self.limits.min_rate > 0 && !self.limits.rate_window.is_zero() {
            if let Some((start, _)) = self.turn {
                at = at.min(start + self.limits.rate_window);
            }
        }
        at
    }
}

/// A connection's [`Pace`], shared by its stream and its protocol loop.
#[derive(Debug, Clone)]
pub struct PaceHandle(Arc<Mutex<Pace>>);

impl PaceHandle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pace> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The unit the peer was sending is complete.
    pub fn completed(&self) {
        self.lock().completed(now());
    }

    pub fn in_frame(&self) -> bool {
        self.lock().in_frame()
    }

    /// Cuts the connection for `reason`: its pending and next reads fail,
    /// so its protocol loop ends as it does on any cut, settling first.
    pub fn cut(&self, reason: Reason) {
        let mut pace = self.lock();
        pace.forced = Some(Cut(reason));
        if let Some(waker) = pace.waker.take() {
            waker.wake();
        }
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A stream whose reads fail with a [`Cut`] when the peer breaks its pace.
pub struct Paced<S> {
    inner: S,
    pace: PaceHandle,
    timer: Pin<Box<Sleep>>,
    cut: Option<Cut>,
}

impl<S> Paced<S> {
    pub fn new(inner: S, limits: PaceLimits) -> Self {
        let pace = Pace::new(limits, now());
        let at = pace.next_check();
        Paced {
            inner,
            pace: PaceHandle(Arc::new(Mutex::new(pace))),
            timer: Box::pin(tokio::time::sleep_until(at.into())),
            cut: None,
        }
    }

    pub fn handle(&self) -> PaceHandle {
        self.pace.clone()
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Paced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(cut) = this.cut {
            return Poll::Ready(Err(cut.into()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if let Err(cut) = this.pace.lock().received(n, now()) {
                    this.cut = Some(cut);
                    return Poll::Ready(Err(cut.into()));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => loop {
                let at = {
                    let mut pace = this.pace.lock();
                    if let Err(cut) = pace.check(now()) {
                        this.cut = Some(cut);
                        return Poll::Ready(Err(cut.into()));
                    }
                    pace.waker = Some(cx.waker().clone());
                    pace.next_check()
                };
                this.timer.as_mut().reset(at.into());
                ready!(this.timer.as_mut().poll(cx));
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Paced<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, data));
        if matches!(written, Ok(n) if n > 0) {
            this.pace.lock().wrote();
        }
        Poll::Ready(written)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMITS: PaceLimits = PaceLimits {
        idle: Duration::from_secs(600),
        frame_deadline: Duration::from_secs(60),
        min_rate: 512,
        rate_window: Duration::from_secs(10),
    };

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_trickle_of_one_byte_a_second_is_cut_at_the_end_of_the_first_window() {
        let t0 = Instant::now();
        let mut pace = Pace::new(LIMITS, t0);
        let mut cut = None;
        for s in 0..60 {
            if let Err(c) = pace.received(1, t0 + secs(s as f64)) {
                cut = Some((s, c));
                break;
            }
        }
        assert_eq!(cut, Some((10, Cut(Reason::TooSlow))));
    }

    #[test]
    fn a_frame_that_arrives_quickly_is_never_measured_and_resets_the_idle_timer() {
        let t0 = Instant::now();
        let mut pace = Pace::new(LIMITS, t0);
        pace.received(300, t0 + secs(1.0)).unwrap();
        pace.completed(t0 + secs(1.01));
        // Silence well past the window: the frame was complete.
        pace.check(t0 + secs(500.0)).unwrap();
        assert_eq!(pace.next_check(), t0 + secs(1.01) + LIMITS.idle);
        assert_eq!(
            pace.check(t0 + secs(601.02)),
            Err(Cut(Reason::Idle)),
            "idle counts from the last completed frame"
        );
    }

    #[test]
    fn bytes_that_never_complete_a_frame_do_not_keep_a_connection_alive() {
        let limits = PaceLimits {
            min_rate: 0,
            ..LIMITS
        };
        let t0 = Instant::now();
        let mut pace = Pace::new(limits, t0);
        for s in 0..59 {
            pace.received(100, t0 + secs(s as f64)).unwrap();
        }
        assert_eq!(
            pace.received(100, t0 + secs(60.0)),
            Err(Cut(Reason::FrameDeadline))
        );
    }

    #[test]
    fn a_fast_large_frame_passes_window_after_window() {
        let t0 = Instant::now();
        let mut pace = Pace::new(LIMITS, t0);
        for ms in 0..30_000u64 {
            // 100 kB/s for 30 s, in 1 ms reads.
            pace.received(100, t0 + Duration::from_millis(ms)).unwrap();
        }
        pace.completed(t0 + secs(30.0));
        pace.check(t0 + secs(31.0)).unwrap();
    }

    #[test]
    fn our_write_ends_the_peers_turn_but_not_its_frame_deadline() {
        let limits = PaceLimits {
            idle: Duration::from_secs(3600),
            frame_deadline: Duration::from_secs(300),
            min_rate: 2,
            rate_window: Duration::from_secs(30),
        };
        let t0 = Instant::now();
        let mut pace = Pace::new(limits, t0);
        // ENQ, our ACK, then a frame every 25 s, each answered.
        pace.received(1, t0).unwrap();
        pace.wrote();
        let mut t = 0.0;
        while t + 25.0 < 300.0 {
            t += 25.0;
            pace.received(40, t0 + secs(t)).unwrap();
            pace.wrote();
        }
        assert_eq!(
            pace.check(t0 + secs(300.0)),
            Err(Cut(Reason::FrameDeadline)),
            "the transfer from ENQ must end within its deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_stream_fails_a_pending_read_when_the_trickle_is_too_slow() {
        let (client, server) = tokio::io::duplex(1024);
        let mut paced = Paced::new(server, LIMITS);
        let mut client = client;
        let writer = tokio::spawn(async move {
            for _ in 0..20 {
                if client.write_all(b"x").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let started = tokio::time::Instant::now();
        let mut buf = [0u8; 16];
        let e = loop {
            match paced.read(&mut buf).await {
                Ok(0) => panic!("closed before the cut"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert_eq!(Cut::of(&e), Some(Reason::TooSlow));
        assert_eq!(started.elapsed().as_secs(), 10);
        writer.abort();
    }

    #[tokio::test]
    async fn a_cut_from_outside_fails_the_pending_read() {
        let (_client, server) = tokio::io::duplex(64);
        let mut paced = Paced::new(server, LIMITS);
        let handle = paced.handle();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 4];
            paced.read(&mut buf).await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        handle.cut(Reason::Displaced);
        let read = tokio::time::timeout(Duration::from_secs(1), reader)
            .await
            .expect("the read is woken")
            .unwrap();
        assert_eq!(Cut::of(&read.unwrap_err()), Some(Reason::Displaced));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_paced_stream_is_cut_at_its_idle_timeout() {
        let (_client, server) = tokio::io::duplex(64);
        let limits = PaceLimits {
            idle: Duration::from_secs(5),
            ..LIMITS
        };
        let mut paced = Paced::new(server, limits);
        let started = tokio::time::Instant::now();
        let mut buf = [0u8; 4];
        let e = paced.read(&mut buf).await.unwrap_err();
        assert_eq!(Cut::of(&e), Some(Reason::Idle));
        assert_eq!(started.elapsed().as_secs(), 5);
    }
}
