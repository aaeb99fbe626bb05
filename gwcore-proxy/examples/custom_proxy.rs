//! Your own hyper proxy on gwcore's routing table, without gwcore-proxy:
//! gwcore decides (listener, route, rule, filters, backend by weight), your
//! code moves the bytes. Needs gwcore, hyper, hyper-util, http-body-util, tokio.
//! Left out for brevity: TLS, HTTP/2, timeouts, retries, mirrors (gwcore-proxy has them).
//!
//! ```text
//! python3 -m http.server 9000 &    # stands in for every backend Service
//! cargo run -p gwcore-proxy --example custom_proxy -- 127.0.0.1:9000
//! curl -i localhost:8080/hello/     # 200 from the backend, x-via: gwcore
//! curl -i localhost:8080/old        # 301 to /hello, made by the proxy itself
//! ```
use std::{convert::Infallible, hash::BuildHasher, sync::Arc};

use gwcore::engine::{ComputeOptions, compute};
use gwcore::table::{Action, BackendAction, RequestHead, Table};
use http_body_util::{BodyExt, Empty, combinators::BoxBody};
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode, body::Bytes, body::Incoming, service::service_fn};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};

const MANIFESTS: &str = include_str!("custom_proxy.yaml"); // a Gateway and one HTTPRoute

type Body = BoxBody<Bytes, hyper::Error>;

struct Proxy {
    table: Table,
    upstream: Option<String>,
    client: Client<HttpConnector, Incoming>,
}

fn reply(status: StatusCode, location: Option<&str>) -> Response<Body> {
    let mut resp = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    if let Some(l) = location.and_then(|l| l.parse().ok()) {
        resp.headers_mut().insert(hyper::header::LOCATION, l);
    }
    resp
}

async fn handle(p: Arc<Proxy>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let head = RequestHead::from_parts(80, &parts); // we serve the Gateway's port 80
    let fwd = match p.table.find(&head).action {
        Action::Forward(fwd) => fwd,
        Action::Redirect(r) => return Ok(reply(r.status, Some(&r.location))),
        Action::Respond(r) => return Ok(reply(r.status(), None)), // 404, 400, 500...
    };
    let backend = fwd.pick(std::hash::RandomState::new().hash_one(0)); // weighted draw
    let target = match fwd.backend_action(&head, backend) {
        BackendAction::Forward(target) => target,
        BackendAction::Redirect(r) => return Ok(reply(r.status, Some(&r.location))),
        BackendAction::Respond(r) => return Ok(reply(r.status(), None)),
    };
    fwd.apply_request(&head, Some(backend), &mut parts); // header and URL filters
    let svc = &target.service; // in a cluster: the Service's DNS name
    let authority = (p.upstream.clone())
        .unwrap_or_else(|| format!("{}.{}.svc:{}", svc.name, svc.namespace, target.port));
    let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    parts.uri = format!("http://{authority}{pq}")
        .parse()
        .unwrap_or_default(); // bad: 502 below
    match p.client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => {
            let (mut rp, body) = resp.into_parts();
            fwd.apply_response(&head, Some(backend), &mut rp);
            Ok(Response::from_parts(rp, body.boxed()))
        }
        Err(_) => Ok(reply(StatusCode::BAD_GATEWAY, None)),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let loaded = gwcore::load::load_str("manifests", MANIFESTS);
    for d in &loaded.diagnostics {
        eprintln!("{d}"); // file, line, object and field of each problem
    }
    let snapshot = gwcore::Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o));
    let opts = ComputeOptions::new("example.com/demo", "2026-01-01T00:00:00Z");
    let out = compute(&snapshot, &opts); // statuses in out.statuses, routing per Gateway
    let routing = out.routing.values().next().ok_or("no Gateway of ours")?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let (table, upstream) = (Table::compile(routing), std::env::args().nth(1));
    let proxy = Arc::new(Proxy {
        table,
        upstream,
        client,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    println!("Gateway port 80 on http://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let p = proxy.clone();
        let service = service_fn(move |req| handle(p.clone(), req));
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(tcp), service));
    }
}
