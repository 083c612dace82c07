//! Servers for the redirect tests: one that answers every request with a
//! 307 to one location, and one that records the credentials each request
//! it gets carries.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::serve::{serve, Serving};

/// The `DPoP` and `Authorization` headers of each request a [`recording`]
/// server got, in order.
pub type Landed = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

/// A server answering 200 to everything, recording what [`Landed`] says.
pub async fn recording() -> (Serving, Landed) {
    let landed = Landed::default();
    let record = landed.clone();
    let server = serve(tower::service_fn(move |req: Request<Incoming>| {
        let header = |name| {
            req.headers()
                .get(name)
                .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
        };
        record
            .lock()
            .unwrap()
            .push((header("dpop"), header("authorization")));
        async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())) }
    }))
    .await;
    (server, landed)
}

/// A server redirecting every request (307) to `location`.
pub async fn redirecting(location: String) -> Serving {
    serve(tower::service_fn(move |_: Request<Incoming>| {
        let answer = Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header("location", location.clone())
            .body(Full::<Bytes>::default());
        async move { Ok::<_, Infallible>(answer.unwrap()) }
    }))
    .await
}
