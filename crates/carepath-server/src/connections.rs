//! Bounds on connections, which cost the server memory and a file descriptor whether
//! or not their callers ever authenticate: how many may be open, how long a new one
//! may take to send its first call, how long one may stay open with no call in
//! progress, and how many long-lived streams (health watches, reflection, status
//! watches) one connection and the whole server may hold.
//!
//! Accepted connections come through [`incoming`], which closes a connection beyond
//! [`ConnectionLimits::max_connections`] at once (so its client fails fast and tries
//! elsewhere, rather than waiting in the listen queue) and wraps each kept one in a
//! [`Tracked`] stream. A `Tracked` connection knows how many calls it carries (the
//! [`crate::overload::Admission`] layer counts them, through the [`ConnectionInfo`]
//! every request carries in its extensions) and closes itself when it has carried none
//! for [`ConnectionLimits::idle_timeout`] (or, for a new connection, none has begun
//! within [`ConnectionLimits::first_call_timeout`]). HTTP/2 keep-alive pings, set on the
//! server, find peers that vanished without closing.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures::{Stream, StreamExt, task::AtomicWaker};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tonic::{
    Status,
    transport::server::{Connected, TcpConnectInfo, TcpIncoming},
};

/// Connections open at once by default: far more than the clients of a plan's
/// services (each keeps one or a few), well under a process's usual limit of file
/// descriptors (1,024), which the database pool and record files share.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 512;
/// How long a new connection may take to begin its first call by default.
pub const DEFAULT_FIRST_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may stay open with no call in progress by default; clients
/// reconnect on their next call.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Long-lived streams (health watches, reflection, status watches) one connection may
/// hold by default.
pub const DEFAULT_LONG_LIVED_PER_CONNECTION: u32 = 16;
/// Long-lived streams the whole server may hold by default.
pub const DEFAULT_LONG_LIVED_TOTAL: u32 = 1024;
/// How often an idle peer is pinged, and how long its answer may take.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The bounds every connection meets.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: u32,
    /// How long a new connection may take to begin its first call (its TLS handshake
    /// included).
    pub first_call_timeout: Duration,
    /// How long a connection may stay open with no call in progress.
    pub idle_timeout: Duration,
    /// Long-lived streams one connection may hold; more are refused with
    /// RESOURCE_EXHAUSTED.
    pub long_lived_per_connection: u32,
    /// Long-lived streams the server may hold; more are refused with
    /// RESOURCE_EXHAUSTED.
    pub long_lived_total: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            first_call_timeout: DEFAULT_FIRST_CALL_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            long_lived_per_connection: DEFAULT_LONG_LIVED_PER_CONNECTION,
            long_lived_total: DEFAULT_LONG_LIVED_TOTAL,
        }
    }
}

/// Methods whose answer is a stream that stays open as long as the client wants: each
/// holds a long-lived stream permit of its connection and of the server.
const LONG_LIVED: &[&str] = &[
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/carepath.secondopinion.v1.SecondOpinionService/WatchStatus",
];

/// Whether calls of `path` hold a long-lived stream.
pub fn is_long_lived(path: &str) -> bool {
    LONG_LIVED.contains(&path)
}

/// The server-wide state of connections: the counts behind the limits and what was
/// refused.
#[derive(Debug, Clone)]
pub struct Connections {
    limits: ConnectionLimits,
    open: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    /// Connections closed at accept because the server had its most open, since start.
    refused: Arc<AtomicU64>,
    /// Connections closed for having no call in progress too long, since start.
    idle_closed: Arc<AtomicU64>,
}

impl Connections {
    pub fn new(limits: ConnectionLimits) -> Self {
        Connections {
            limits,
            open: Arc::new(Semaphore::new(limits.max_connections.max(1) as usize)),
            streams: Arc::new(Semaphore::new(limits.long_lived_total.max(1) as usize)),
            refused: Arc::default(),
            idle_closed: Arc::default(),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        (self.limits.max_connections.max(1) as usize).saturating_sub(self.open.available_permits())
    }

    /// Whether the server has its most connections open now.
    pub fn is_full(&self) -> bool {
        self.open.available_permits() == 0
    }

    /// Connections refused and closed for idleness since start.
    pub fn closed(&self) -> (u64, u64) {
        (
            self.refused.load(Ordering::Relaxed),
            self.idle_closed.load(Ordering::Relaxed),
        )
    }

    /// Takes a long-lived stream for a call on `connection`, or says why not.
    pub fn long_lived(&self, connection: &ConnectionInfo) -> Result<StreamPermit, Status> {
        let on_connection = connection
            .state
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                carepath_app::telemetry::refused("grpc", "streams_per_connection");
                Status::resource_exhausted(format!(
                    "too many long-lived streams on this connection: at most {} (health \
                 watches, reflection, status watches); close one or open another connection",
                    self.limits.long_lived_per_connection
                ))
            })?;
        let on_server = self.streams.clone().try_acquire_owned().map_err(|_| {
            carepath_app::telemetry::refused("grpc", "streams");
            Status::resource_exhausted(format!(
                "too many long-lived streams on this server: at most {}; retry later",
                self.limits.long_lived_total
            ))
        })?;
        Ok(StreamPermit {
            _permits: (on_connection, on_server),
        })
    }
}

/// A long-lived stream held; given back when dropped (when the answer stream ends).
#[derive(Debug)]
pub struct StreamPermit {
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

/// What one connection shares with the calls it carries.
#[derive(Debug)]
struct ConnectionState {
    /// Calls in progress on the connection (until their answer has ended).
    calls: AtomicUsize,
    /// When the last call ended, or the connection was accepted.
    quiet_since: Mutex<Instant>,
    /// Whether a call ever began on the connection.
    used: std::sync::atomic::AtomicBool,
    /// The connection's reader, woken when its last call ends so it starts counting
    /// the idle time.
    reader: AtomicWaker,
    streams: Arc<Semaphore>,
}

/// The connection a request came on, in each request's extensions.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    tcp: TcpConnectInfo,
    state: Arc<ConnectionState>,
}

impl ConnectionInfo {
    /// The connection's address and the client's.
    pub fn tcp(&self) -> &TcpConnectInfo {
        &self.tcp
    }

    /// Counts a call on this connection until the returned guard is dropped.
    pub fn call(&self) -> CallOnConnection {
        self.state.calls.fetch_add(1, Ordering::AcqRel);
        self.state.used.store(true, Ordering::Release);
        CallOnConnection {
            state: self.state.clone(),
        }
    }
}

/// One call in progress on a connection.
#[derive(Debug)]
pub struct CallOnConnection {
    state: Arc<ConnectionState>,
}

impl Drop for CallOnConnection {
    fn drop(&mut self) {
        if self.state.calls.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.state.quiet_since.lock().expect("not poisoned") = Instant::now();
            self.state.reader.wake();
        }
    }
}

/// The connection info of `request` (plain or TLS), if it came through [`incoming`].
pub fn connection_of<B>(request: &http::Request<B>) -> Option<&ConnectionInfo> {
    let extensions = request.extensions();
    extensions.get::<ConnectionInfo>().or_else(|| {
        extensions
            .get::<tonic::transport::server::TlsConnectInfo<ConnectionInfo>>()
            .map(|tls| tls.get_ref())
    })
}

/// An accepted connection, holding its place among the open ones, closed when it
/// has carried no call for too long.
#[derive(Debug)]
pub struct Tracked {
    io: TcpStream,
    info: ConnectionInfo,
    limits: ConnectionLimits,
    connections: Connections,
    idle: Pin<Box<Sleep>>,
    _open: OwnedSemaphorePermit,
}

impl Tracked {
    /// The instant the connection is to be closed if no call is in progress.
    fn deadline(&self) -> Instant {
        let state = &self.info.state;
        let quiet_since = *state.quiet_since.lock().expect("not poisoned");
        if state.used.load(Ordering::Acquire) {
            quiet_since + self.limits.idle_timeout
        } else {
            quiet_since + self.limits.first_call_timeout
        }
    }

    /// An error when the connection has been without a call past its deadline.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let state = self.info.state.clone();
        state.reader.register(cx.waker());
        if state.calls.load(Ordering::Acquire) > 0 {
            return Ok(());
        }
        let deadline = self.deadline();
        if self.idle.deadline() != deadline {
            self.idle.as_mut().reset(deadline);
        }
        if self.idle.as_mut().poll(cx).is_ready() {
            self.connections.idle_closed.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection closed: no call in progress",
            ));
        }
        Ok(())
    }
}

impl Connected for Tracked {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.poll_idle(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The connections accepted on `listener` (without Nagle's delay: a reply split over
/// several writes must not wait for the client's acknowledgement), each within the
/// limits of `connections`.
pub fn incoming(
    listener: TcpListener,
    connections: Connections,
) -> impl Stream<Item = io::Result<Tracked>> {
    let keepalive = Some(KEEPALIVE_INTERVAL);
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(keepalive)
        .filter_map(move |accepted| {
            let connections = connections.clone();
            async move {
                let io = match accepted {
                    Ok(io) => io,
                    Err(e) => return Some(Err(e)),
                };
                let Ok(open) = connections.open.clone().try_acquire_owned() else {
                    // Dropping the stream closes it: the client fails fast.
                    connections.refused.fetch_add(1, Ordering::Relaxed);
                    carepath_app::telemetry::refused("grpc", "connections");
                    return None;
                };
                let limits = connections.limits;
                let now = Instant::now();
                let info = ConnectionInfo {
                    tcp: io.connect_info(),
                    state: Arc::new(ConnectionState {
                        calls: AtomicUsize::new(0),
                        quiet_since: Mutex::new(now),
                        used: std::sync::atomic::AtomicBool::new(false),
                        reader: AtomicWaker::new(),
                        streams: Arc::new(Semaphore::new(
                            limits.long_lived_per_connection.max(1) as usize
                        )),
                    }),
                };
                Some(Ok(Tracked {
                    io,
                    info,
                    limits,
                    connections,
                    idle: Box::pin(tokio::time::sleep_until(now + limits.first_call_timeout)),
                    _open: open,
                }))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_long_lived_stream_answers_with_a_stream() {
        use prost::Message;
        let mut streamed = Vec::new();
        for set in [
            carepath_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ] {
            let set = prost_types::FileDescriptorSet::decode(set).expect("descriptor set");
            for file in &set.file {
                for service in &file.service {
                    for method in &service.method {
                        if method.server_streaming() {
                            streamed.push(format!(
                                "/{}.{}/{}",
                                file.package(),
                                service.name(),
                                method.name()
                            ));
                        }
                    }
                }
            }
        }
        for path in LONG_LIVED {
            assert!(
                streamed.contains(&(*path).to_owned()),
                "{path} in {streamed:?}"
            );
        }
        // The one streamed answer that is not long-lived: a download ends with its file.
        streamed.retain(|path| !is_long_lived(path));
        assert_eq!(
            streamed,
            ["/carepath.secondopinion.v1.SecondOpinionService/DownloadRecord"]
        );
    }
}
