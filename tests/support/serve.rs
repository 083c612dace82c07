//! The one accept-and-serve loop of the tests and benchmarks: listen on
//! 127.0.0.1, hand each connection to a function, stop when dropped.
//!
//! Benchmarks include this file on its own:
//! `#[path = "../tests/support/serve.rs"] mod serve;`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What these functions serve: a tower service of HTTP requests that never
/// fails (an axum `Router`, a `tower::service_fn`), with futures and bodies
/// that can go to any thread.
pub trait HttpService:
    tower::Service<
        Request<Incoming>,
        Response = Response<Self::Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
    /// The response body.
    type Body: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> HttpService for S
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
    S: Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    type Body = B;
}

/// A listener on 127.0.0.1 and its accept loop; dropping it stops the loop
/// (connections already accepted run on).
#[derive(Debug)]
pub struct Serving {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Serving {
    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Serves `service` (a tower service, such as an axum `Router` or a
/// `tower::service_fn`) over HTTP/1.1 and HTTP/2 on a free port.
pub async fn serve(service: impl HttpService) -> Serving {
    serve_on(0, service).await
}

/// [`serve`] on a given port (0: any free one).
pub async fn serve_on(port: u16, service: impl HttpService) -> Serving {
    serve_tcp_on(port, move |tcp| serve_connection(tcp, service.clone())).await
}

/// Calls `on_connection` with each accepted TCP connection, in a task of
/// its own: for servers that speak raw bytes, or TLS first.
pub async fn serve_tcp<F, Fut>(on_connection: F) -> Serving
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    serve_tcp_on(0, on_connection).await
}

async fn serve_tcp_on<F, Fut>(port: u16, on_connection: F) -> Serving
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("a bound listener's address");
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(on_connection(tcp));
        }
    });
    Serving { addr, task }
}

/// Serves `service` on one connection (HTTP/1.1, or HTTP/2 with prior
/// knowledge) until the client closes it.
pub async fn serve_connection(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    service: impl HttpService,
) {
    let service = hyper::service::service_fn(move |req| service.clone().oneshot(req));
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}
