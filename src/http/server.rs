//! The HTTP server loop: hyper's HTTP/1 connection driver under limits that
//! keep one client, or twenty thousand slow ones, from taking the service
//! down.
//!
//! - A request's headers must arrive within `header_timeout`, and an idle
//!   keep-alive connection is closed after the same time (hyper's header read
//!   timeout runs from the moment a connection waits for a request).
//! - A request must be read and answered within `request_timeout` (a body
//!   trickled in byte by byte gets `408`).
//! - At most `max_connections` are open. When a new client arrives at the
//!   cap, the oldest connection that is not in the middle of a request (still
//!   sending its headers, or idle between requests) is closed to make room;
//!   only when every open connection is answering a request does accepting
//!   wait. So `GET /healthz` is answered under a flood of half-sent requests.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long open requests may take to finish once the service stops.
const GRACE: Duration = Duration::from_secs(10);

/// The server's limits (`AFTERCARE_HTTP_*`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// One open connection, as the accept loop sees it.
struct Open {
    /// Requests it is answering now.
    busy: Arc<AtomicUsize>,
    close: CancellationToken,
}

#[derive(Default)]
struct Conns {
    next: u64,
    /// By age: the first is the oldest.
    open: BTreeMap<u64, Open>,
}

/// Counts a request in progress for as long as it lives (also when its
/// future is dropped by a timeout or a closed connection).
struct InRequest(Arc<AtomicUsize>);

impl InRequest {
    fn new(busy: &Arc<AtomicUsize>) -> InRequest {
        busy.fetch_add(1, Ordering::AcqRel);
        InRequest(busy.clone())
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `app` on `listener` until `stop`, then lets open requests finish
/// (for [`GRACE`] at most).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let conns = Arc::new(Mutex::new(Conns::default()));
    let freed = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: let some close.
                    tracing::warn!("http accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if !make_room(&conns, &freed, limits.max_connections, &stop).await {
            break;
        }
        let busy = Arc::new(AtomicUsize::new(0));
        let close = CancellationToken::new();
        let id = {
            let mut c = conns.lock().expect("connection table");
            let id = c.next;
            c.next += 1;
            c.open.insert(
                id,
                Open {
                    busy: busy.clone(),
                    close: close.clone(),
                },
            );
            id
        };
        let app = app.clone();
        let (conns, freed, stop) = (conns.clone(), freed.clone(), stop.clone());
        tasks.spawn(async move {
            connection(stream, peer, app, limits, busy, close, stop).await;
            conns.lock().expect("connection table").open.remove(&id);
            freed.notify_waiters();
        });
        // Reap finished connection tasks as we go.
        while tasks.try_join_next().is_some() {}
    }
    // Stopping: each connection finishes its request and closes.
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Waits until a new connection may be opened, closing the oldest one that
/// is not answering a request if the table is full. False when stopping.
async fn make_room(
    conns: &Mutex<Conns>,
    freed: &Notify,
    max: usize,
    stop: &CancellationToken,
) -> bool {
    loop {
        let wait = freed.notified();
        tokio::pin!(wait);
        // Registered before looking, so a connection closing in between
        // still wakes us.
        wait.as_mut().enable();
        {
            let mut c = conns.lock().expect("connection table");
            if c.open.len() < max {
                return true;
            }
            let idle = c
                .open
                .iter()
                .find(|(_, o)| o.busy.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id);
            if let Some(id) = idle {
                let o = c.open.remove(&id).expect("just found");
                o.close.cancel();
                return true;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return false,
            _ = wait => {}
        }
    }
}

/// Drives one connection until it ends, is closed to make room, or the
/// service stops. Each request carries the client's address as axum's
/// `ConnectInfo<SocketAddr>` extension.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    busy: Arc<AtomicUsize>,
    close: CancellationToken,
    stop: CancellationToken,
) {
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        let in_request = InRequest::new(&busy);
        async move {
            let answer = tokio::time::timeout(limits.request_timeout, app.oneshot(req)).await;
            drop(in_request);
            Ok::<Response<Body>, Infallible>(match answer {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => (
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request was not complete within {} s",
                        limits.request_timeout.as_secs()
                    ),
                )
                    .into_response(),
            })
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = close.cancelled() => {}
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(GRACE, conn).await;
        }
    }
}
