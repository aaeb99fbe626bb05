//! `gwcore explain FILE|DIR... --gateway NS/NAME --url URL`: how one request
//! would be routed, and why.

use gwcore::values::PathMatchType;
use std::path::PathBuf;
use std::process::ExitCode;

use gwcore::Snapshot;
use gwcore::engine::{ComputeOptions, compute};
use gwcore::extension::Extensions;
use gwcore::model::{Kind, Object, ObjectKey};
use gwcore::table::path::{normalize, prefix_matches};
use gwcore::table::{RequestHead, Table};

use crate::common::ControllerArgs;

/// Arguments of `gwcore explain`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Manifest files or folders.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The Gateway, as `namespace/name`.
    #[arg(long)]
    gateway: String,
    /// The request URL (`http://host[:port]/path?query`).
    #[arg(long)]
    url: String,
    /// The listener port. Default: the URL's port, else 80 (http) or 443 (https).
    #[arg(long)]
    port: Option<u16>,
    /// A request header, `name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// The method. Default: GET.
    #[arg(short = 'X', long = "request", default_value = "GET")]
    method: String,
    /// The TLS server name, for HTTPS listeners.
    #[arg(long)]
    sni: Option<String>,
    #[command(flatten)]
    controller: ControllerArgs,
}

/// Splits `scheme://authority/path?query` into (scheme, authority, path+query).
fn split_url(url: &str) -> (&str, &str, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, pq) = rest.split_at(cut);
    let pq = if pq.starts_with('?') || pq.is_empty() {
        format!("/{pq}")
    } else {
        pq.to_owned()
    };
    (scheme, authority, pq)
}

/// Runs `gwcore explain`, reading and resolving the kinds `extensions`
/// register too.
pub(crate) fn run(args: Args, extensions: &Extensions) -> ExitCode {
    match render(&args, extensions) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// The explanation as text, or why there is none.
fn render(args: &Args, extensions: &Extensions) -> Result<String, String> {
    use std::fmt::Write as _;
    let loaded = gwcore_proxy::files::read_manifests_extended(&args.paths, extensions);
    for d in &loaded.diagnostics {
        eprintln!("{d}");
    }
    let (ns, name) = args
        .gateway
        .split_once('/')
        .ok_or("--gateway must be namespace/name")?;
    let gw_key = ObjectKey::new(Kind::Gateway, ns, name);
    let snapshot = Snapshot::from_objects(loaded.objects.iter().map(|(o, _)| o.clone()));
    if snapshot.get(&gw_key).is_none() {
        return Err(format!("no Gateway {ns}/{name} in the input"));
    }
    let now = gwcore_proxy::provider::now_rfc3339();
    let found = args
        .controller
        .controllers(&snapshot)?
        .into_iter()
        .find_map(|c| {
            let opts = ComputeOptions::new(c, now.clone()).with_extensions(extensions.clone());
            let out = compute(&snapshot, &opts);
            let routing = out.routing.get(&gw_key)?.clone();
            Some((routing, out.refusals))
        });
    let (routing, refusals) = found.ok_or_else(|| {
        format!("Gateway {ns}/{name} is not managed by any controller named in the input (see `gwcore check`)")
    })?;

    let (scheme, authority, pq) = split_url(&args.url);
    let url_port = authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    let port = args
        .port
        .or(url_port)
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let mut head = RequestHead::new(port, authority, &args.method, &pq);
    for h in &args.headers {
        match h.split_once(':') {
            Some((n, v)) => head = head.with_header(n.trim(), v.trim()),
            None => eprintln!("warning: ignoring header {h:?} (expected `name: value`)"),
        }
    }
    if let Some(sni) = &args.sni {
        head = head.with_sni(sni);
    }

    let table = Table::compile(&routing);
    let mut out = table.explain(&head).to_string();
    for p in table.problems() {
        let _ = writeln!(out, "problem: {} rule {}: {}", p.route, p.rule, p.message);
    }

    // Routes that are not attached to this Gateway at all.
    let gw_prefix = format!("{ns}/{name}");
    let path = head.path().map(str::to_owned).unwrap_or_default();
    let mut printed_header = false;
    for r in refusals.iter().filter(|r| {
        r.parent == gw_prefix
            || r.parent.starts_with(&format!("{gw_prefix}/"))
            || r.parent.starts_with(&format!("{gw_prefix}:"))
    }) {
        if !printed_header {
            let _ = writeln!(out, "not attached to {gw_prefix}:");
            printed_header = true;
        }
        let would = snapshot
            .get(&r.route)
            .is_some_and(|o| would_match_path(o, &path));
        let _ = writeln!(
            out,
            "  {} ({}): {}{}",
            r.route,
            r.reason,
            r.message,
            if would {
                " — it has a rule for this path, so it would have served this request"
            } else {
                ""
            }
        );
    }
    Ok(out)
}

/// Whether a route (not attached) has a rule whose path matches `path`.
fn would_match_path(o: &Object, path: &str) -> bool {
    let Object::HttpRoute(r) = o else {
        return false;
    };
    if r.spec.rules.is_empty() {
        return true;
    }
    r.spec.rules.iter().any(|rule| {
        rule.matches.is_empty()
            || rule.matches.iter().any(|m| match &m.path {
                None => true,
                Some(p) => {
                    let v = p.value.as_deref().unwrap_or("/");
                    match p.type_.as_ref().unwrap_or(&PathMatchType::PathPrefix) {
                        PathMatchType::Exact => normalize(v).is_ok_and(|n| n == path),
                        PathMatchType::PathPrefix => prefix_matches(v, path),
                        _ => false,
                    }
                }
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme(url: &str) -> String {
        let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/scenarios/manifests/acme.yaml");
        render(
            &Args {
                paths: vec![scenario],
                gateway: "infra-ns/shared-gateway".into(),
                url: url.into(),
                port: None,
                headers: vec![],
                method: "GET".into(),
                sni: None,
                controller: ControllerArgs {
                    controller_name: None,
                },
            },
            &Extensions::new(),
        )
        .unwrap()
    }

    #[test]
    fn acme_hr_is_404_because_the_route_is_not_attached() {
        let text = acme("http://acme.example/hr");
        assert!(text.contains("answer: 404"), "{text}");
        assert!(
            text.contains("HTTPRoute hr/hr (NotAllowedByListeners)"),
            "{text}"
        );
        assert!(text.contains("would have served this request"), "{text}");
    }

    #[test]
    fn acme_careers_names_the_winning_rule() {
        let text = acme("http://acme.example/careers/x");
        assert!(
            text.contains(
                "WINNER   HTTPRoute careers/careers rule 0 match 0 [PathPrefix /careers]"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "answer: forward (HTTPRoute careers/careers rule 0) to careers/careers:9080"
            ),
            "{text}"
        );
    }

    #[test]
    fn urls_split() {
        assert_eq!(
            split_url("http://a.com/x?y=1"),
            ("http", "a.com", "/x?y=1".to_owned())
        );
        assert_eq!(
            split_url("https://a.com:8443"),
            ("https", "a.com:8443", "/".to_owned())
        );
        assert_eq!(split_url("a.com?q"), ("http", "a.com", "/?q".to_owned()));
    }
}
