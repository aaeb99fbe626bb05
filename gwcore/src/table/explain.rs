//! Why a request gets the answer it gets: the listener chosen, every
//! candidate rule that accepts the Host, whether it matches and, when it
//! matches but loses, the precedence step on which it lost.

use std::fmt;

use serde::Serialize;

use crate::hostname;
use crate::model::ObjectKey;

use super::matching::{Conditions, Extra};
use super::path::prefix_matches;
use super::{
    Action, CandPath, Candidate, ListenerTable, PathError, Precedence, RequestHead, Step, Table,
};

/// One listener of the request's port.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ListenerVerdict {
    /// Name.
    pub name: String,
    /// Hostname.
    pub hostname: Option<String>,
    /// Whether its hostname accepts the request's Host.
    pub accepts_host: bool,
    /// Whether it serves the request.
    pub chosen: bool,
}

/// One candidate match on the chosen listener.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CandidateReport {
    /// The route.
    pub route: ObjectKey,
    /// Rule index.
    pub rule: usize,
    /// Rule name.
    pub rule_name: Option<String>,
    /// Match index.
    pub match_index: usize,
    /// The route hostname (`None`: any).
    pub hostname: Option<String>,
    /// What the match asks for, in words.
    pub describe: String,
    /// Why it does not match the request, if it does not.
    pub why_not: Option<String>,
    /// Whether it is the winner.
    pub winner: bool,
    /// For a matching candidate that lost: the deciding step.
    pub lost_on: Option<Step>,
    /// Its rank.
    pub precedence: Precedence,
}

/// The explanation of one request.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Explanation {
    /// The Gateway.
    pub gateway: ObjectKey,
    /// The port.
    pub port: u16,
    /// The Host (normalized).
    pub host: String,
    /// The normalized path, or why it is invalid.
    pub path: Result<String, PathError>,
    /// The listeners of the port.
    pub listeners: Vec<ListenerVerdict>,
    /// Candidates whose hostname accepts the Host, winner first, then the
    /// other matching ones by precedence, then those that do not match.
    pub candidates: Vec<CandidateReport>,
    /// The answer, in words.
    pub outcome: String,
}

fn describe(c: &Candidate) -> String {
    let mut parts = Vec::new();
    match &c.path {
        CandPath::Exact(p) => parts.push(format!("Exact {p}")),
        CandPath::Prefix(p) => parts.push(format!("PathPrefix {p}")),
        CandPath::Regex(p) => parts.push(format!("RegularExpression {p}")),
        CandPath::Grpc => parts.push("gRPC".to_owned()),
    }
    if let Some(m) = &c.cond.method {
        parts.push(format!("method {m}"));
    }
    if !c.cond.headers().is_empty() {
        parts.push(format!("{} header match(es)", c.cond.headers().len()));
    }
    if !c.cond.queries().is_empty() {
        parts.push(format!("{} query match(es)", c.cond.queries().len()));
    }
    parts.join(", ")
}

fn why_not(c: &Candidate, head: &RequestHead, path: &str) -> Option<String> {
    match &c.path {
        CandPath::Exact(p) if **p != *path => return Some(format!("path is not exactly {p}")),
        CandPath::Prefix(p) if !prefix_matches(p, path) => {
            return Some(format!("path is not under {p}"));
        }
        CandPath::Grpc if !head.is_grpc() => return Some("not a gRPC request".to_owned()),
        _ => {}
    }
    if let Some(m) = &c.cond.method
        && m != head.method()
    {
        return Some(format!("method is not {m}"));
    }
    let single = |x: Extra| Conditions::only(x).matches(head, path);
    if let Some(r) = c.cond.path_regex()
        && !single(Extra {
            path_regex: Some(r.clone()),
            ..Default::default()
        })
    {
        return Some("path does not match the regular expression".to_owned());
    }
    if c.cond.grpc().is_some()
        && !single(Extra {
            grpc: c.cond.grpc().cloned(),
            ..Default::default()
        })
    {
        return Some("gRPC service/method differs".to_owned());
    }
    for h in c.cond.headers() {
        if !single(Extra {
            headers: vec![h.clone()].into(),
            ..Default::default()
        }) {
            return Some(format!("header {} does not match", h.0));
        }
    }
    for q in c.cond.queries() {
        if !single(Extra {
            queries: vec![q.clone()].into(),
            ..Default::default()
        }) {
            return Some(format!("query parameter {} does not match", q.0));
        }
    }
    None
}

impl Table {
    /// Explains [`Table::find`] for `head`.
    pub fn explain(&self, head: &RequestHead) -> Explanation {
        let decision = self.find(head);
        let outcome = match (&decision.action, &decision.matched) {
            (Action::Forward(f), Some(m)) => {
                let backends: Vec<String> = f
                    .backends()
                    .iter()
                    .map(|b| match b.target() {
                        Ok(t) => format!(
                            "{}/{}:{} (weight {})",
                            t.service.namespace,
                            t.service.name,
                            t.port,
                            b.weight()
                        ),
                        Err(e) => format!(
                            "invalid backend: {} (weight {}, answers 500)",
                            e.message,
                            b.weight()
                        ),
                    })
                    .collect();
                format!(
                    "forward ({} rule {}) to {}",
                    m.route(),
                    m.rule_index(),
                    backends.join(", ")
                )
            }
            (Action::Redirect(r), _) => format!("redirect {} to {}", r.status.as_u16(), r.location),
            (Action::Respond(r), _) => format!("{} ({:?})", r.status(), r.reason),
            (Action::Forward(_), None) => "forward".to_owned(),
        };
        let mut ex = Explanation {
            gateway: self.gateway.clone(),
            port: head.port(),
            host: head.host().to_owned(),
            path: head.path().map(str::to_owned),
            listeners: Vec::new(),
            candidates: Vec::new(),
            outcome,
        };
        let Some(pt) = self.port(head.port()) else {
            return ex;
        };
        let chosen = decision.listener.map(|l| l.name.as_str());
        for l in &pt.listeners {
            ex.listeners.push(ListenerVerdict {
                name: l.info.name.clone(),
                hostname: l.info.hostname.clone(),
                accepts_host: l
                    .info
                    .hostname
                    .as_deref()
                    .is_none_or(|h| hostname::matches(h, head.host())),
                chosen: chosen == Some(l.info.name.as_str()) && decision.listener == Some(&l.info),
            });
        }
        let Some(lt) = pt
            .listeners
            .iter()
            .find(|l| decision.listener == Some(&l.info))
        else {
            return ex;
        };
        let Ok(path) = head.path() else { return ex };
        ex.candidates = candidates(lt, head, path, decision.matched.map(|m| m.precedence()));
        ex
    }
}

fn candidates(
    lt: &ListenerTable,
    head: &RequestHead,
    path: &str,
    winner: Option<&Precedence>,
) -> Vec<CandidateReport> {
    let host = head.host();
    let accepts = |h: &Option<String>| h.as_deref().is_none_or(|h| hostname::matches(h, host));
    let http = lt
        .http
        .entries()
        .filter(|(h, _)| accepts(h))
        .flat_map(|(_, b)| b.slots());
    let grpc = lt
        .grpc
        .entries()
        .filter(|(h, _)| accepts(h))
        .flat_map(|(_, b)| b.slots.iter());
    let mut out: Vec<CandidateReport> = http
        .chain(grpc)
        .map(|slot| {
            let c = &slot.cand;
            let rule = &slot.route.rules[c.rule as usize];
            let why = why_not(c, head, path);
            let is_winner = winner == Some(&c.prec);
            let lost_on = match (winner, &why) {
                (Some(w), None) if !is_winner => Some(w.compare(&c.prec).1),
                _ => None,
            };
            CandidateReport {
                route: slot.route.info.key.clone(),
                rule: rule.index,
                rule_name: rule.name.clone(),
                match_index: c.match_index as usize,
                hostname: c.hostname.as_deref().map(str::to_owned),
                describe: describe(c),
                why_not: why,
                winner: is_winner,
                lost_on,
                precedence: c.prec.clone(),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (!a.winner, a.why_not.is_some(), &a.precedence, &a.route).cmp(&(
            !b.winner,
            b.why_not.is_some(),
            &b.precedence,
            &b.route,
        ))
    });
    out
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = match &self.path {
            Ok(p) => p.clone(),
            Err(e) => format!("<invalid: {e}>"),
        };
        writeln!(
            f,
            "request: port {} host {} path {}",
            self.port, self.host, path
        )?;
        writeln!(
            f,
            "gateway: {}/{}",
            self.gateway.namespace, self.gateway.name
        )?;
        if self.listeners.is_empty() {
            writeln!(f, "listeners: none on port {}", self.port)?;
        }
        for l in &self.listeners {
            writeln!(
                f,
                "  listener {} (hostname {}): {}",
                l.name,
                l.hostname.as_deref().unwrap_or("*any*"),
                if l.chosen {
                    "CHOSEN"
                } else if l.accepts_host {
                    "accepts the host, but a more specific listener serves it"
                } else {
                    "does not accept the host"
                }
            )?;
        }
        for c in &self.candidates {
            let what = format!(
                "{} rule {}{} match {} [{}]{}",
                c.route,
                c.rule,
                c.rule_name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default(),
                c.match_index,
                c.describe,
                c.hostname
                    .as_deref()
                    .map(|h| format!(" host {h}"))
                    .unwrap_or_default(),
            );
            if c.winner {
                writeln!(f, "  WINNER   {what}")?;
            } else if let Some(w) = &c.why_not {
                writeln!(f, "  no match {what}: {w}")?;
            } else if let Some(step) = c.lost_on {
                writeln!(f, "  lost     {what}: on {}", step.describe())?;
            }
        }
        writeln!(f, "answer: {}", self.outcome)
    }
}
