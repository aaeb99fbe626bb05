//! Escaped slashes: what a Gateway does with a request path that holds an
//! encoded `/` (`%2F`) or `\` (`%5C`).
//!
//! The table matches the normalized path ([`super::path::normalize`]), in
//! which `%2F` and `%5C` are data: `/public/..%2Fadmin` is the two
//! segments `public` and `..%2Fadmin`, under `/public`. Many backends
//! decode them and then resolve dot segments, and read `/admin`: a request
//! routed to the `/public` rule would be served what the `/admin` rule
//! (and its header match) protects. [`route`] closes that gap, under one of
//! four settings ([`EscapedSlashes`], Envoy Gateway's names):
//!
//! | Setting | A path with `%2F` or `%5C` |
//! |---|---|
//! | [`EscapedSlashes::UnescapeAndRedirect`] (default) | answered [`REDIRECT_STATUS`] to the decoded path; the client's next request is routed on it |
//! | [`EscapedSlashes::UnescapeAndForward`] | routed and forwarded decoded |
//! | [`EscapedSlashes::RejectRequest`] | answered 400 |
//! | [`EscapedSlashes::KeepUnchanged`] | routed and forwarded as received, but only when its decoded path is routed to the same rule; otherwise 400 |
//!
//! "Decoded" is [`super::path::decode_separators`]: `%2F` and `%5C` (either
//! case) read as `/`, then dot segments removed again. Whatever the
//! setting, the path a backend receives, read by a backend that decodes
//! `%2F` and `%5C` as separators (or `%5C` as a `\` of data), is routed by
//! the table to the rule that received it. Paths without an escaped
//! separator are routed as they are under every setting, and cost one scan
//! for `%`.
//!
//! ```
//! use gwcore::table::slashes::{EscapedSlashes, PathDecision, decide};
//! let d = decide("/public/..%2Fadmin", EscapedSlashes::UnescapeAndRedirect);
//! assert_eq!(d, PathDecision::Redirect("/admin".into()));
//! assert_eq!(decide("/public/a", EscapedSlashes::RejectRequest), PathDecision::AsReceived);
//! ```

use std::fmt;
use std::str::FromStr;

use http::StatusCode;
use serde::Serialize;

use super::path::decode_separators;
use super::{Action, Decision, RequestHead, Table};

/// The status of the redirect [`EscapedSlashes::UnescapeAndRedirect`]
/// answers: 307 Temporary Redirect, which a client follows with the same
/// method and body (RFC 9110 §15.4.8), so a POST is not turned into a GET.
pub const REDIRECT_STATUS: StatusCode = StatusCode::TEMPORARY_REDIRECT;

/// What a Gateway does with a request path holding `%2F` or `%5C`.
/// Default is [`EscapedSlashes::UnescapeAndRedirect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[non_exhaustive]
pub enum EscapedSlashes {
    /// Route and forward the path as received, escapes kept as data, when
    /// its decoded path is routed to the same rule; otherwise 400. For APIs
    /// that carry keys with `/` in a path segment.
    KeepUnchanged,
    /// Answer 400.
    RejectRequest,
    /// Answer [`REDIRECT_STATUS`] with `Location:` the decoded path (and
    /// the query); the client's next request is routed on it.
    #[default]
    UnescapeAndRedirect,
    /// Route and forward the decoded path.
    UnescapeAndForward,
}

impl EscapedSlashes {
    /// Every setting.
    pub const ALL: [EscapedSlashes; 4] = [
        EscapedSlashes::KeepUnchanged,
        EscapedSlashes::RejectRequest,
        EscapedSlashes::UnescapeAndRedirect,
        EscapedSlashes::UnescapeAndForward,
    ];

    /// The name, as written in a PathPolicy and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            EscapedSlashes::KeepUnchanged => "KeepUnchanged",
            EscapedSlashes::RejectRequest => "RejectRequest",
            EscapedSlashes::UnescapeAndRedirect => "UnescapeAndRedirect",
            EscapedSlashes::UnescapeAndForward => "UnescapeAndForward",
        }
    }
}

impl fmt::Display for EscapedSlashes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`EscapedSlashes::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not one of KeepUnchanged, RejectRequest, UnescapeAndRedirect, UnescapeAndForward"
)]
pub struct UnknownEscapedSlashes(String);

impl FromStr for EscapedSlashes {
    type Err = UnknownEscapedSlashes;

    /// The exact name (case-sensitive, as the CRD's enum).
    fn from_str(s: &str) -> Result<EscapedSlashes, UnknownEscapedSlashes> {
        EscapedSlashes::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownEscapedSlashes(s.to_owned()))
    }
}

/// What to do with a normalized request path under a setting, before
/// routing ([`decide`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathDecision {
    /// Route the path as received: it holds no escaped separator.
    AsReceived,
    /// [`EscapedSlashes::KeepUnchanged`]: route the path as received, and
    /// forward it only if this decoded path is routed to the same rule.
    Verify(String),
    /// [`EscapedSlashes::UnescapeAndForward`]: route and forward this path.
    Forward(String),
    /// [`EscapedSlashes::UnescapeAndRedirect`]: redirect to this path.
    Redirect(String),
    /// [`EscapedSlashes::RejectRequest`]: answer 400.
    Reject,
}

/// What `setting` does with `path`, a normalized path
/// ([`RequestHead::path`]).
pub fn decide(path: &str, setting: EscapedSlashes) -> PathDecision {
    let Some(decoded) = decode_separators(path) else {
        return PathDecision::AsReceived;
    };
    match setting {
        EscapedSlashes::KeepUnchanged => PathDecision::Verify(decoded),
        EscapedSlashes::RejectRequest => PathDecision::Reject,
        EscapedSlashes::UnescapeAndRedirect => PathDecision::Redirect(decoded),
        EscapedSlashes::UnescapeAndForward => PathDecision::Forward(decoded),
    }
}

/// Why [`route`] refused a request (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// [`EscapedSlashes::RejectRequest`]: the path holds `%2F` or `%5C`.
    #[error("the request path holds an encoded slash or backslash")]
    EscapedSeparator,
    /// [`EscapedSlashes::KeepUnchanged`]: decoded, the path is routed
    /// elsewhere (another rule, or none).
    #[error("the request path is routed elsewhere once its encoded slashes are decoded")]
    DecodedElsewhere,
}

/// What [`route`] answers itself, instead of routing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// Answer [`REDIRECT_STATUS`] with this `Location` (the decoded path
    /// and the query as received).
    Redirect(String),
    /// Answer 400.
    Refused(Refusal),
}

/// Routes `head` in `table` under `setting`: the table's decision, or the
/// gateway's own answer. Under [`EscapedSlashes::UnescapeAndForward`] the
/// decoded path is set on `head`, which is the path to forward
/// ([`super::Forward::apply_request`] does). A path that cannot be
/// normalized is left to the table (400).
pub fn route<'t>(
    table: &'t Table,
    head: &mut RequestHead,
    setting: EscapedSlashes,
) -> Result<Decision<'t>, Answer> {
    let decision = match head.path() {
        Ok(p) => decide(p, setting),
        Err(_) => PathDecision::AsReceived,
    };
    match decision {
        PathDecision::AsReceived => Ok(table.find(head)),
        PathDecision::Reject => Err(Answer::Refused(Refusal::EscapedSeparator)),
        PathDecision::Redirect(path) => Err(Answer::Redirect(match head.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        })),
        PathDecision::Forward(path) => {
            head.set_path(&path);
            Ok(table.find(head))
        }
        PathDecision::Verify(decoded) => {
            let decision = table.find(head);
            // Only a forwarded request reaches a backend; the gateway's own
            // answers (404, a redirect filter's) read no further.
            let Action::Forward(kept) = &decision.action else {
                return Ok(decision);
            };
            let mut other = head.clone();
            other.set_path(&decoded);
            let same = match &table.find(&other).action {
                Action::Forward(d) => std::ptr::eq(kept.matched().rule(), d.matched().rule()),
                _ => false,
            };
            if same {
                Ok(decision)
            } else {
                Err(Answer::Refused(Refusal::DecodedElsewhere))
            }
        }
    }
}

#[cfg(test)]
mod tests;
