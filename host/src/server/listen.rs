//! Serving HTTP/1.1 connections: the accept loop with its connection cap,
//! the header-read and idle timeouts, TCP_NODELAY and graceful shutdown.
//!
//! Each connection is watched by its own task: reads and writes that make
//! progress, and requests in flight (from the service call until the
//! response body is dropped). With no request in flight, a connection whose
//! request head has begun — it opened, or a byte arrived after its previous
//! request — must finish the head within the header-read timeout, and any
//! other must read or write something within the idle timeout; otherwise it
//! is closed. A request in flight is bounded by the request deadline
//! (`server::deadline`) instead, and long-lived event streams by shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// A request head must arrive within this.
    pub header_read_timeout: Duration,
    /// A connection with nothing in flight is closed after this quiet time.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// Accept connections on `listener` and serve `router` on each until `stop`
/// completes; then stop accepting, let every connection finish its request
/// in flight (idle ones close at once) and return when all have closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()>,
) -> io::Result<()> {
    let all = u32::try_from(limits.max_connections.clamp(1, 65_536)).unwrap_or(1024);
    let slots = Arc::new(Semaphore::new(usize::try_from(all).unwrap_or(1024)));
    let closing = CancellationToken::new();
    let mut stop = pin!(stop);
    loop {
        // Over the cap, new connections wait in the listen queue.
        let slot = tokio::select! {
            () = &mut stop => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, for instance: wait, then retry.
                    tracing::error!(error = %e, "accepting a connection failed");
                    tokio::select! {
                        () = &mut stop => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        // Streaming responses stall ~40 ms per request without this.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
        tokio::spawn(connection(
            tcp,
            peer,
            router.clone(),
            limits,
            closing.clone(),
            slot,
        ));
    }
    drop(listener);
    closing.cancel();
    // Every connection holds a slot until it has closed.
    let _all_closed = slots.acquire_many(all).await;
    Ok(())
}

/// Errors of one connection, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serve one connection until it ends, times out, or shutdown closes it.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    closing: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: tcp,
        activity: activity.clone(),
    });
    let service = Tracked {
        router: TowerToHyperService::new(router),
        peer,
        activity: activity.clone(),
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The header-read timeout is ours (below): hyper's would also count the
    // quiet time between requests.
    builder.header_read_timeout(None);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut shutting_down = false;
    loop {
        let deadline = activity.deadline(&limits);
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = closing.cancelled(), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.changed.notified() => {}
            () = sleep_until(deadline) => {
                if activity.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!("closing a connection: request head too slow, or idle");
                    return;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What a connection has been doing.
struct Activity {
    state: Mutex<ActivityState>,
    /// A request ended or a request head began: the deadline moved.
    changed: Notify,
}

struct ActivityState {
    /// Requests between the service call and their response body's end.
    in_flight: usize,
    /// When the current request head began, while none is in flight.
    head_since: Option<Instant>,
    /// The last read or write that moved bytes, or the last request's end.
    last: Instant,
}

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Activity {
            // A new connection is expected to send a request head at once.
            state: Mutex::new(ActivityState {
                in_flight: 0,
                head_since: Some(now),
                last: now,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection is to be closed, if nothing happens before.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        let state = self.state();
        if state.in_flight > 0 {
            return None;
        }
        let idle = state.last + limits.idle_timeout;
        Some(match state.head_since {
            Some(since) => idle.min(since + limits.header_read_timeout),
            None => idle,
        })
    }

    fn read(&self) {
        let began = {
            let mut state = self.state();
            let now = Instant::now();
            state.last = now;
            let began = state.in_flight == 0 && state.head_since.is_none();
            if began {
                state.head_since = Some(now);
            }
            began
        };
        if began {
            // The header-read deadline may come before the idle one.
            self.changed.notify_one();
        }
    }

    fn wrote(&self) {
        self.state().last = Instant::now();
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        let mut state = self.state();
        state.in_flight += 1;
        state.head_since = None;
        InFlight(self.clone())
    }
}

/// A request in flight on its connection, until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut state = self.0.state();
            state.in_flight = state.in_flight.saturating_sub(1);
            state.last = Instant::now();
        }
        self.0.changed.notify_one();
    }
}

/// The socket, reporting reads and writes that move bytes.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The router, counting each request in flight until its response body ends.
struct Tracked {
    router: TowerToHyperService<Router>,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

type Served = Result<hyper::Response<TrackedBody>, Infallible>;

impl hyper::service::Service<hyper::Request<Incoming>> for Tracked {
    type Response = hyper::Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Served> + Send>>;

    fn call(&self, mut request: hyper::Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        let response = self.router.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body holding its request's place in flight.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
