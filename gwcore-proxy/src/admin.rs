//! The admin endpoint: `/healthz`, `/readyz`, `/metrics`, `/status`.
//!
//! - `/healthz` answers 200 while the process serves.
//! - `/readyz` answers 200 once the first configuration is served and every
//!   port is bound, 503 before that, while draining, or when a port could
//!   not be bound.
//! - `/metrics` is the Prometheus text format ([`crate::metrics`]), with
//!   the policy plug-ins' counters ([`crate::plugin::PolicyPlugin::counters`]).
//! - `/status` is JSON: the status of every object (Kubernetes shape), the
//!   refused attachments, the sockets, and the last refused reload.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::body::{Body, full};
use crate::proxy::Proxy;

/// Answers one admin request.
pub fn answer<B>(proxy: &Proxy, req: &Request<B>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if proxy.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        "/metrics" => {
            let mut body = proxy.metrics().render();
            for (_, plugin) in proxy.config().plugins.policy_plugins() {
                if let Some(counters) = plugin.counters() {
                    counters.render(&mut body);
                }
            }
            let config = proxy.config();
            if let Some(picker) = config.plugins.endpoint_picker() {
                for counters in picker.counters().into_iter().chain(picker.more_counters()) {
                    counters.render(&mut body);
                }
            }
            let mut r = text(StatusCode::OK, &body);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/status" => {
            let body = serde_json::to_vec_pretty(&proxy.status_json()).unwrap_or_default();
            let mut r = Response::new(full(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "try /healthz, /readyz, /metrics or /status\n",
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(full(body.to_owned()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Serves the admin endpoint on `addr`; returns the bound address and the
/// task (abort it to stop).
pub async fn serve(
    proxy: Arc<Proxy>,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let proxy = proxy.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let r = answer(&proxy, &req);
                    async move { Ok::<_, std::convert::Infallible>(r) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((local, task))
}
