//! The HTTP server: actix-server accepts TCP connections, wraps each in the connection
//! guard ([`super::guard`]) and serves it with actix-http's HTTP/1 service running the
//! actix-web app. This is what `actix_web::HttpServer` assembles, with the same
//! settings, except that `HttpServer` offers no way to wrap a connection.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::{HttpService, Request, Response};
use actix_service::{fn_service, map_config, IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt};
use actix_web::dev::{AppConfig, Server};
use tokio::net::TcpStream;

use super::guard::Guarded;

/// How the server accepts and keeps connections.
#[derive(Debug, Clone)]
pub struct Settings {
    pub workers: usize,
    pub backlog: u32,
    pub max_connections_per_worker: usize,
    /// Time a client has to send a request head.
    pub client_request_timeout: Duration,
    /// Idle keep-alive connections close after this.
    pub keep_alive: Duration,
    /// Time in-flight requests get to finish on shutdown, in seconds.
    pub shutdown_timeout_s: u64,
}

/// Time a connection being closed gets to finish its last write (actix-web's default).
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Binds every address `listen` resolves to and returns the server (not yet polled) and
/// the bound addresses. Signals are not handled (the caller stops the server).
pub fn bind<F, I, S, B>(listen: &str, settings: &Settings, app: F) -> std::io::Result<(Server, Vec<SocketAddr>)>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let mut builder = Server::build()
        .workers(settings.workers)
        .backlog(settings.backlog)
        .max_concurrent_connections(settings.max_connections_per_worker)
        .shutdown_timeout(settings.shutdown_timeout_s)
        .disable_signals();
    let mut bound = Vec::new();
    let addrs: Vec<SocketAddr> = listen.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{listen} resolves to no address")));
    }
    for addr in addrs {
        let listener = tcp_listener(addr, settings.backlog)?;
        let addr = listener.local_addr()?;
        bound.push(addr);
        let signal = builder.graceful_shutdown_signal();
        let (app, settings) = (app.clone(), settings.clone());
        builder = builder.listen(format!("zaiko-http-{addr}"), listener, move || {
            let signal = signal.clone();
            let app = app().into_factory().map_err(|err| err.into().error_response());
            let http = HttpService::build()
                .keep_alive(settings.keep_alive)
                .client_request_timeout(settings.client_request_timeout)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .h1_allow_half_closed(true)
                .local_addr(addr)
                .graceful_shutdown_signal(move || {
                    let signal = signal.clone();
                    async move { signal.notified().await }
                })
                // Nothing reads the app config (host names for URL generation).
                .h1(map_config(app, |_| AppConfig::default()));
            fn_service(|io: TcpStream| async move {
                let peer = io.peer_addr().ok();
                Ok::<_, actix_http::error::DispatchError>((Guarded::new(io), peer))
            })
            .and_then(http)
        })?;
    }
    Ok((builder.run(), bound))
}

/// A listening socket as actix-web makes one: `SO_REUSEADDR` (a restart can bind while
/// old connections linger), the given backlog.
fn tcp_listener(addr: SocketAddr, backlog: u32) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}
