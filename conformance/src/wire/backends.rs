//! Echo pods: what kubelet and the EndpointSlice controller would do for
//! the vector's Deployments and Services, on loopback.
//!
//! A pod runs the server its Deployment's container asks for, as upstream's
//! `echo-basic` image does by environment: `GRPC_ECHO_SERVER` a gRPC echo,
//! `TCP_ECHO_SERVER` a TCP echo (with TLS on target port 8443, using the
//! certificate of the pod's secret volume), `UDP_ECHO_SERVER` a UDP echo
//! on the Service's UDP ports, the `coredns` image a DNS server
//! ([`super::udp`]), otherwise the HTTP echo of
//! `gwcore-proxy` (which also speaks h2c and WebSocket), over TLS on target
//! port 8443 when the pod has a secret volume (`TLS_SERVER_CERT`: the
//! answers then report the SNI seen).

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use gwcore::Snapshot;
use gwcore::model::{Kind, Object, ObjectKey};
use gwcore_proxy::echo::{EchoIdentity, EchoServer, canonical_header_name};
use gwcore_proxy::tcp_echo::TcpEchoServer;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::udp::{UdpKind, UdpServer};
use crate::cluster::{Cluster, StoreKey};

/// The server a pod runs on one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Flavor {
    /// HTTP/1.1, h2c and WebSocket echo.
    Http,
    /// gRPC echo (h2c).
    Grpc,
    /// TCP echo.
    Tcp,
    /// TCP echo behind TLS.
    TcpTls,
    /// HTTP echo behind TLS (`TLS_SERVER_CERT`, target port 8443).
    HttpTls,
    /// gRPC echo behind TLS (`TLS_SERVER_CERT`, target port 8443).
    GrpcTls,
    /// UDP echo.
    Udp,
    /// DNS over UDP.
    Dns,
}

impl Flavor {
    fn as_str(self) -> &'static str {
        match self {
            Flavor::Http => "http",
            Flavor::Grpc => "grpc",
            Flavor::Tcp => "tcp",
            Flavor::TcpTls => "tcp-tls",
            Flavor::HttpTls => "http-tls",
            Flavor::GrpcTls => "grpc-tls",
            Flavor::Udp => "udp",
            Flavor::Dns => "dns",
        }
    }

    fn is_udp(self) -> bool {
        matches!(self, Flavor::Udp | Flavor::Dns)
    }
}

enum Server {
    Http(EchoServer),
    Grpc(GrpcEchoServer),
    Tcp(TcpEchoServer),
    Udp(UdpServer),
}

impl Server {
    fn addr(&self) -> SocketAddr {
        match self {
            Server::Http(s) => s.addr(),
            Server::Grpc(s) => s.addr,
            Server::Tcp(s) => s.addr(),
            Server::Udp(s) => s.addr(),
        }
    }
}

/// A pod: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pod {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// The running echo pods, and which pods serve which Service.
#[derive(Default)]
pub(crate) struct Pods {
    servers: BTreeMap<(Pod, Flavor), Server>,
    services: BTreeMap<(String, String), Vec<Pod>>,
}

impl std::fmt::Debug for Pods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pods")
            .field("servers", &self.servers.len())
            .field("services", &self.services)
            .finish()
    }
}

/// What a Deployment's pods run.
#[derive(Debug, Clone)]
struct PodSpec {
    flavor: Flavor,
    /// `namespace/name` of the Secret of the pod's secret volume.
    secret: Option<ObjectKey>,
    /// The ConfigMap of the pod's configMap volume when it verifies client
    /// certificates with it (`TLS_CLIENT_CACERTS`).
    client_ca: Option<ObjectKey>,
    labels: serde_json::Map<String, Value>,
    replicas: u64,
}

fn pod_spec(ns: &str, d: &Value) -> PodSpec {
    let env: BTreeSet<String> = d
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| c.get("env").and_then(Value::as_array).into_iter().flatten())
        .filter_map(|e| e.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let flavor = if env.contains("GRPC_ECHO_SERVER") {
        Flavor::Grpc
    } else if env.contains("TCP_ECHO_SERVER") {
        Flavor::Tcp
    } else if env.contains("UDP_ECHO_SERVER") {
        Flavor::Udp
    } else if images(d).any(|i| i.contains("/coredns")) {
        Flavor::Dns
    } else {
        Flavor::Http
    };
    let secret = d
        .pointer("/spec/template/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|v| v.pointer("/secret/secretName").and_then(Value::as_str))
        .map(|s| ObjectKey::new(Kind::Secret, ns, s));
    let client_ca = d
        .pointer("/spec/template/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|v| v.pointer("/configMap/name").and_then(Value::as_str))
        .filter(|_| env.contains("TLS_CLIENT_CACERTS"))
        .map(|s| ObjectKey::new(Kind::ConfigMap, ns, s));
    PodSpec {
        flavor,
        secret,
        client_ca,
        labels: d
            .pointer("/spec/template/metadata/labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        replicas: d
            .pointer("/spec/replicas")
            .and_then(Value::as_u64)
            .unwrap_or(1),
    }
}

/// The images of a Deployment's containers.
fn images(d: &Value) -> impl Iterator<Item = &str> {
    d.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("image").and_then(Value::as_str))
}

/// The pod names of a Deployment: `<deployment>-wire-<n>`, so that the
/// name minus its last two `-` parts is the Deployment, as with real pods.
fn pod_names(deployment: &str, replicas: u64) -> Vec<String> {
    (0..replicas)
        .map(|n| format!("{deployment}-wire-{n}"))
        .collect()
}

/// A pod name minus its last two `-` parts (its Deployment).
pub(crate) fn deployment_of(pod: &str) -> &str {
    let mut cut = pod.len();
    for _ in 0..2 {
        match pod[..cut].rfind('-') {
            Some(i) => cut = i,
            None => return pod,
        }
    }
    &pod[..cut]
}

impl Pods {
    /// The pods serving a Service.
    pub(crate) fn of_service(&self, namespace: &str, name: &str) -> &[Pod] {
        self.services
            .get(&(namespace.to_string(), name.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// The HTTP echo server of a pod.
    pub(crate) fn http_echo(&self, pod: &Pod) -> Option<&EchoServer> {
        match self.servers.get(&(pod.clone(), Flavor::Http)) {
            Some(Server::Http(s)) => Some(s),
            _ => None,
        }
    }

    /// Starts the echo servers the cluster's pods need (keeping those
    /// already running) and returns the EndpointSlices of every Service.
    pub(crate) async fn sync(
        &mut self,
        cluster: &Cluster,
        snapshot: &Snapshot,
    ) -> Result<Vec<Object>, String> {
        let mut deployments: BTreeMap<(String, String), PodSpec> = BTreeMap::new();
        for (key, d) in cluster.iter() {
            if key.kind == "Deployment" {
                let ns = key.namespace.clone();
                deployments.insert((ns.clone(), key.name.clone()), pod_spec(&ns, d));
            }
        }
        self.services.clear();
        let mut slices = Vec::new();
        for (key, svc) in cluster.iter() {
            if key.kind != "Service" {
                continue;
            }
            let ns = key.namespace.clone();
            let (spec, pods) = service_pods(cluster, &deployments, &ns, &key.name, svc);
            let mut by_flavor: BTreeMap<(String, Flavor), Vec<Value>> = BTreeMap::new();
            for port in svc
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let udp = port.get("protocol").and_then(Value::as_str) == Some("UDP");
                let flavor = match spec.flavor {
                    Flavor::Dns if udp => Flavor::Dns,
                    _ if udp => Flavor::Udp,
                    // A UDP pod's TCP ports answer as echo-basic's HTTP.
                    Flavor::Udp | Flavor::Dns => Flavor::Http,
                    Flavor::Tcp if is_tls_port(port) => Flavor::TcpTls,
                    Flavor::Http if is_tls_port(port) && spec.secret.is_some() => Flavor::HttpTls,
                    Flavor::Grpc if is_tls_port(port) && spec.secret.is_some() => Flavor::GrpcTls,
                    f => f,
                };
                for pod in &pods {
                    by_flavor
                        .entry((pod.name.clone(), flavor))
                        .or_default()
                        .push(port.clone());
                }
            }
            for ((pod_name, flavor), ports) in by_flavor {
                let pod = Pod {
                    namespace: ns.clone(),
                    name: pod_name,
                };
                let addr = self.start(&pod, flavor, &key.name, &spec, snapshot).await?;
                slices.push(slice(&ns, &key.name, &pod, flavor, addr, &ports)?);
            }
            self.services.insert((ns, key.name.clone()), pods);
        }
        Ok(slices)
    }

    async fn start(
        &mut self,
        pod: &Pod,
        flavor: Flavor,
        service: &str,
        spec: &PodSpec,
        snapshot: &Snapshot,
    ) -> Result<SocketAddr, String> {
        if let Some(s) = self.servers.get(&(pod.clone(), flavor)) {
            return Ok(s.addr());
        }
        let identity = EchoIdentity {
            namespace: pod.namespace.clone(),
            service: service.to_string(),
            pod: pod.name.clone(),
        };
        let bind = SocketAddr::from(([127, 0, 0, 1], 0));
        let failed = |e: std::io::Error| format!("echo pod {}: {e}", pod.name);
        let server = match flavor {
            Flavor::Http => Server::Http(EchoServer::start(identity, bind).await.map_err(failed)?),
            Flavor::Grpc => Server::Grpc(
                GrpcEchoServer::start(identity, bind, None)
                    .await
                    .map_err(failed)?,
            ),
            Flavor::GrpcTls => {
                let tls = pod_tls(&pod.name, spec, snapshot)?;
                Server::Grpc(
                    GrpcEchoServer::start(identity, bind, Some(&tls))
                        .await
                        .map_err(failed)?,
                )
            }
            Flavor::Tcp => Server::Tcp(
                TcpEchoServer::start(identity, bind, None)
                    .await
                    .map_err(failed)?,
            ),
            Flavor::Udp | Flavor::Dns => {
                let kind = if flavor == Flavor::Dns {
                    UdpKind::Dns
                } else {
                    UdpKind::Echo
                };
                Server::Udp(
                    UdpServer::start(kind, identity, bind)
                        .await
                        .map_err(failed)?,
                )
            }
            Flavor::HttpTls => {
                let tls = pod_tls(&pod.name, spec, snapshot)?;
                Server::Http(
                    EchoServer::start_tls(identity, bind, &tls)
                        .await
                        .map_err(failed)?,
                )
            }
            Flavor::TcpTls => {
                let tls = pod_tls(&pod.name, spec, snapshot)?;
                Server::Tcp(
                    TcpEchoServer::start(identity, bind, Some(tls))
                        .await
                        .map_err(failed)?,
                )
            }
        };
        let addr = server.addr();
        self.servers.insert((pod.clone(), flavor), server);
        Ok(addr)
    }
}

/// The TLS settings of a pod's TLS port: the certificate of its secret
/// volume, and with `TLS_CLIENT_CACERTS` a client certificate of the CA of
/// its configMap volume required (as echo-basic does).
fn pod_tls(
    pod: &str,
    spec: &PodSpec,
    snapshot: &Snapshot,
) -> Result<std::sync::Arc<rustls::ServerConfig>, String> {
    let key = spec
        .secret
        .as_ref()
        .ok_or_else(|| format!("echo pod {pod}: a TLS port without a secret volume"))?;
    let cert = gwcore_proxy::tls::certified_key(snapshot, key)
        .map_err(|e| format!("echo pod {pod}: {e}"))?;
    let Some(ca) = &spec.client_ca else {
        return gwcore_proxy::tcp_echo::tls_config(cert)
            .map_err(|e| format!("echo pod {pod}: {e}"));
    };
    let verifier = gwcore_proxy::tls::client_verifier(snapshot, std::slice::from_ref(ca), false)
        .map_err(|e| format!("echo pod {pod}: {e}"))?;
    let provider = rustls::ClientConfig::builder().crypto_provider().clone();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("echo pod {pod}: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(std::sync::Arc::new(rustls::sign::SingleCertAndKey::from(
            cert,
        )));
    Ok(std::sync::Arc::new(cfg))
}

/// Upstream's TCP echo serves TLS on target port 8443.
fn is_tls_port(port: &Value) -> bool {
    port.get("targetPort").and_then(Value::as_u64) == Some(8443)
        || port
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.contains("tls"))
}

/// The pods of a Service: those of the Deployments its selector picks, or
/// those its EndpointSlices point at (ready endpoints' `targetRef` pods,
/// by Deployment), or else a pod of its own.
fn service_pods(
    cluster: &Cluster,
    deployments: &BTreeMap<(String, String), PodSpec>,
    ns: &str,
    name: &str,
    svc: &Value,
) -> (PodSpec, Vec<Pod>) {
    let own = PodSpec {
        flavor: Flavor::Http,
        secret: None,
        client_ca: None,
        labels: serde_json::Map::new(),
        replicas: 1,
    };
    let mut picked: Vec<(&String, &PodSpec)> = Vec::new();
    let selector = svc
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .filter(|s| !s.is_empty());
    if let Some(sel) = selector {
        for ((dns, dname), spec) in deployments {
            if dns == ns && sel.iter().all(|(k, v)| spec.labels.get(k) == Some(v)) {
                picked.push((dname, spec));
            }
        }
    } else {
        let mut wanted = BTreeSet::new();
        for (key, s) in cluster.iter() {
            if key.kind != "EndpointSlice"
                || key.namespace != ns
                || s.pointer("/metadata/labels/kubernetes.io~1service-name")
                    .and_then(Value::as_str)
                    != Some(name)
            {
                continue;
            }
            for e in s
                .get("endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if e.pointer("/conditions/ready").and_then(Value::as_bool) == Some(false) {
                    continue;
                }
                if let Some(pod) = e.pointer("/targetRef/name").and_then(Value::as_str) {
                    wanted.insert(deployment_of(pod).to_string());
                }
            }
        }
        for d in &wanted {
            if let Some((dname, spec)) = deployments.get_key_value(&(ns.to_string(), d.clone())) {
                picked.push((&dname.1, spec));
            }
        }
    }
    if picked.is_empty() {
        // Engine mode's rule: a Service no pod stands for answers itself.
        let pod = Pod {
            namespace: ns.to_string(),
            name: format!("{name}-echo-0"),
        };
        return (own, vec![pod]);
    }
    let spec = picked[0].1.clone();
    let pods = picked
        .iter()
        .flat_map(|(d, s)| pod_names(d, s.replicas))
        .map(|name| Pod {
            namespace: ns.to_string(),
            name,
        })
        .collect();
    (spec, pods)
}

/// One EndpointSlice: one pod's server, for the Service ports it serves.
fn slice(
    ns: &str,
    service: &str,
    pod: &Pod,
    flavor: Flavor,
    addr: SocketAddr,
    ports: &[Value],
) -> Result<Object, String> {
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| {
            let protocol = if flavor.is_udp() { "UDP" } else { "TCP" };
            let mut out = json!({"port": addr.port(), "protocol": protocol});
            if let Some(n) = p.get("name").and_then(Value::as_str) {
                out["name"] = json!(n);
            }
            if let Some(a) = p.get("appProtocol").and_then(Value::as_str) {
                out["appProtocol"] = json!(a);
            }
            out
        })
        .collect();
    let v = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{service}-{}-{}", pod.name, flavor.as_str()),
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": [{
            "addresses": [addr.ip().to_string()],
            "conditions": {"ready": true},
            "targetRef": {"kind": "Pod", "namespace": ns, "name": pod.name},
        }],
    });
    let key = StoreKey::new("EndpointSlice", Some(ns), service);
    let loaded = gwcore::load::load_str(&key.to_string(), &v.to_string());
    if let Some(d) = loaded.diagnostics.first() {
        return Err(format!(
            "the EndpointSlice made for {key} does not load: {d}"
        ));
    }
    loaded
        .objects
        .into_iter()
        .next()
        .map(|(o, _)| o)
        .ok_or_else(|| format!("the EndpointSlice made for {key} does not load"))
}

/// What the gRPC echo answers, as the one message of its response. The
/// payload is JSON, not protobuf: both ends are the runner's, and the proxy
/// between only forwards gRPC frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GrpcEchoed {
    /// `/<service>/<method>`.
    pub(crate) fully_qualified_method: String,
    /// The `:authority`.
    pub(crate) authority: String,
    /// Request metadata by canonical header name.
    pub(crate) headers: BTreeMap<String, Vec<String>>,
    /// The pod's namespace.
    pub(crate) namespace: String,
    /// The pod name.
    pub(crate) pod: String,
}

/// A gRPC echo server: every call is answered OK with a [`GrpcEchoed`].
struct GrpcEchoServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for GrpcEchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcEchoServer {
    /// Serves h2c, or with `tls` HTTP/2 over TLS (ALPN `h2`).
    async fn start(
        identity: EchoIdentity,
        bind: SocketAddr,
        tls: Option<&rustls::ServerConfig>,
    ) -> std::io::Result<GrpcEchoServer> {
        let tls = tls.map(|t| {
            let mut t = t.clone();
            t.alpn_protocols = vec![b"h2".to_vec()];
            tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(t))
        });
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let identity = std::sync::Arc::new(identity);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let identity = identity.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let identity = identity.clone();
                        async move { Ok::<_, Infallible>(grpc_answer(req, &identity).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                    }
                });
            }
        });
        Ok(GrpcEchoServer { addr, task })
    }
}

type GrpcBody =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// One gRPC message: the 5-byte prefix (uncompressed, length) and payload.
pub(crate) fn grpc_frame(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.extend_from_slice(&[0]);
    b.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    b.extend_from_slice(payload);
    b.freeze()
}

async fn grpc_answer(req: Request<Incoming>, id: &EchoIdentity) -> Response<GrpcBody> {
    let (parts, body) = req.into_parts();
    // Read the request to its end, as a unary server does.
    let _ = body.collect().await;
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &parts.headers {
        headers
            .entry(canonical_header_name(k.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let echoed = GrpcEchoed {
        fully_qualified_method: parts.uri.path().to_string(),
        authority: parts
            .uri
            .authority()
            .map(ToString::to_string)
            .or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            })
            .unwrap_or_default(),
        headers,
        namespace: id.namespace.clone(),
        pod: id.pod.clone(),
    };
    let payload = serde_json::to_vec(&echoed).unwrap_or_default();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = vec![
        Ok(Frame::data(grpc_frame(&payload))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut resp = Response::new(StreamBody::new(futures_util::stream::iter(frames)));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_lose_two_parts_to_their_deployment() {
        for name in pod_names("infra-backend-v1", 2) {
            assert_eq!(deployment_of(&name), "infra-backend-v1");
        }
        assert_eq!(deployment_of("web-backend-0-1"), "web-backend");
        assert_eq!(deployment_of("solo"), "solo");
    }

    #[test]
    fn grpc_frames_carry_their_length() {
        let f = grpc_frame(b"abc");
        assert_eq!(&f[..], &[0, 0, 0, 0, 3, b'a', b'b', b'c']);
    }
}
