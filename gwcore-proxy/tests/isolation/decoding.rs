//! A backend that decodes escaped separators, as many do: it answers like
//! the echo backend (so the suite tells who answered) and records, for
//! every request it receives, the path it would serve once `%2F` and `%5C`
//! are decoded and dot segments resolved.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gwcore_proxy::echo::{EchoIdentity, describe};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// One request a decoding backend received.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    /// Method.
    pub(crate) method: String,
    /// Path and query as received.
    pub(crate) received: String,
    /// The Host field as received.
    pub(crate) host: String,
    /// The `x-role` values as received.
    pub(crate) roles: Vec<String>,
    /// What it serves, reading `%2F` and `%5C` as `/` (dot segments
    /// resolved by the table's normalization when judged).
    pub(crate) read_as_separators: String,
    /// What it serves, reading `%2F` as `/` and `%5C` as a `\` of data.
    pub(crate) read_slash_only: String,
}

/// The path (and query) a backend decoding `%2F`, and `%5C` when
/// `backslash`, reads: each escape, in either case, becomes `/` (the
/// query is left as it is).
pub(crate) fn reading(path_and_query: &str, backslash: bool) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut out = path.replace("%2F", "/").replace("%2f", "/");
    if backslash {
        out = out.replace("%5C", "/").replace("%5c", "/");
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A running decoding backend.
pub(crate) struct DecodingBackend {
    pub(crate) addr: SocketAddr,
    pub(crate) identity: EchoIdentity,
    log: Arc<Mutex<Vec<Served>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DecodingBackend {
    /// Starts one on 127.0.0.1 for the Service `namespace/service`.
    pub(crate) async fn start(namespace: &str, service: &str) -> DecodingBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let identity = EchoIdentity::new(namespace, service, 0);
        let log = Arc::new(Mutex::new(Vec::new()));
        let (id, l) = (identity.clone(), log.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (id, l) = (id.clone(), l.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (id, l) = (id.clone(), l.clone());
                        async move { Ok::<_, Infallible>(answer(&id, &l, req)) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        DecodingBackend {
            addr,
            identity,
            log,
            task,
        }
    }

    /// The requests received since the last call.
    pub(crate) fn take(&self) -> Vec<Served> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl Drop for DecodingBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(
    id: &EchoIdentity,
    log: &Mutex<Vec<Served>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let echoed = describe(&req, id);
    let received = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    log.lock().unwrap().push(Served {
        method: req.method().to_string(),
        read_as_separators: reading(&received, true),
        read_slash_only: reading(&received, false),
        received,
        host: echoed.host.clone(),
        roles: req
            .headers()
            .get_all("x-role")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect(),
    });
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(&echoed).expect("JSON"),
    )));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
