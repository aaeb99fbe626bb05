//! `PathPolicy`'s data-plane half: what a request path holding an encoded
//! `/` (`%2F`) or `\` (`%5C`) gets, before any route is chosen
//! (docs/path-policy.md).
//!
//! The deciding half is [`gwcore::policies::path`]; what each setting does
//! is [`gwcore::table::slashes`]. Unlike a [`crate::plugin::PolicyPlugin`],
//! which runs on the rule a request matched, this runs before matching: the
//! setting changes which path is matched. It reads the policy of the
//! listener that serves the request, else of its Gateway
//! ([`gwcore::table::Table::listener_policy`]), else the proxy's default
//! ([`crate::limits::ServeOptions::escaped_slashes`], `gwcore serve
//! --escaped-slashes`). A path without an escaped separator costs one scan
//! for `%` and is routed as it is.

use gwcore::policies::path::{KIND, PathSettings};
use gwcore::table::path::has_encoded_separator;
use gwcore::table::slashes::{self, Answer, EscapedSlashes, REDIRECT_STATUS};
use gwcore::table::{Decision, RequestHead, Table};
use http::{HeaderValue, Response, StatusCode};

use crate::body::{Body, full};

/// The setting for `head` on `table`: the `PathPolicy` of the listener
/// that serves it, else of the Gateway, else `default`.
pub fn setting(table: &Table, head: &RequestHead, default: EscapedSlashes) -> EscapedSlashes {
    table
        .listener_policy(KIND, head)
        .and_then(|p| p.value.get::<PathSettings>())
        .map_or(default, |s| s.escaped_slashes)
}

/// Routes `head` under its setting ([`setting`] with `default`): the
/// table's decision (with the decoded path set on `head` under
/// `UnescapeAndForward`), or the gateway's answer (307 or 400: see
/// [`response`]).
pub fn route<'t>(
    table: &'t Table,
    head: &mut RequestHead,
    default: EscapedSlashes,
) -> Result<Decision<'t>, Answer> {
    if !head.path().is_ok_and(has_encoded_separator) {
        return Ok(table.find(head));
    }
    let setting = setting(table, head, default);
    slashes::route(table, head, setting)
}

/// The gateway's answer: [`REDIRECT_STATUS`] with `Location`, or 400.
pub fn response(answer: &Answer) -> Response<Body> {
    let (status, text, location) = match answer {
        Answer::Redirect(l) => match HeaderValue::from_str(l) {
            Ok(v) => (REDIRECT_STATUS, "", Some(v)),
            // The decoded path and a received query are visible ASCII.
            Err(_) => (
                StatusCode::BAD_REQUEST,
                "the request path cannot be read\n",
                None,
            ),
        },
        Answer::Refused(slashes::Refusal::DecodedElsewhere) => (
            StatusCode::BAD_REQUEST,
            "the request path has an encoded slash that would change its route\n",
            None,
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            "the request path has an encoded slash or backslash\n",
            None,
        ),
    };
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Some(l) = location {
        h.insert(http::header::LOCATION, l);
    } else {
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_a_redirect_or_400() {
        let r = response(&Answer::Redirect("/admin?x=1".into()));
        assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(r.headers()[http::header::LOCATION], "/admin?x=1");
        let r = response(&Answer::Refused(slashes::Refusal::EscapedSeparator));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.headers().get(http::header::LOCATION).is_none());
    }
}
