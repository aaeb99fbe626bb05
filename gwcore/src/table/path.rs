//! Request path normalization.
//!
//! Before matching, the request path is put in one canonical form, and the
//! backend receives that form (so the path that was matched is the path that
//! is served):
//!
//! 1. It must be origin-form (start with `/`); an empty path is `/`.
//! 2. Percent-encoded *unreserved* characters (RFC 3986 §2.3: `A-Z a-z 0-9
//!    - . _ ~`) are decoded; every other escape is kept, with upper-case hex
//!    (RFC 3986 §6.2.2.1). A `%` not followed by two hex digits is a 400.
//! 3. **Encoded `/` (`%2F`) and `\` (`%5C`) are kept as data** here: they
//!    stay encoded, never split a segment, and so never match a `/` of a
//!    PathPrefix. A backend that decodes them reads another path
//!    (`/public/..%2Fadmin` is `/admin` to it), so a data plane routes
//!    such paths under a Gateway's [`super::slashes::EscapedSlashes`]
//!    setting ([`super::slashes::route`]: redirect to the decoded path by
//!    default, or forward it decoded, reject, or keep it when its decoded
//!    path is routed to the same rule; [`decode_separators`] is that
//!    reading). A raw `\` is rejected with 400: backends disagree on
//!    whether it separates segments.
//! 4. Control characters and spaces are a 400; other bytes outside ASCII are
//!    percent-encoded.
//! 5. Repeated `/` are merged, then dot segments (`.`, `..`, also when they
//!    were written `%2E`) are removed (RFC 3986 §5.2.4); `..` never climbs
//!    above the root. A trailing `/` is kept.

use std::borrow::Cow;

use serde::Serialize;

/// Why a request path cannot be routed. Every variant is answered with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path does not start with `/` (asterisk- or authority-form).
    #[error("the request path does not start with '/'")]
    NotOriginForm,
    /// A `%` not followed by two hexadecimal digits.
    #[error("the request path has a malformed percent-encoding")]
    BadPercentEncoding,
    /// A raw `\`.
    #[error("the request path contains a backslash")]
    Backslash,
    /// A control character or a space.
    #[error("the request path contains a control character or a space")]
    ControlCharacter,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Whether `path` is already in normal form (the common case), checked in
/// one pass without allocating.
fn is_normal(path: &[u8]) -> bool {
    if path.first() != Some(&b'/') {
        return false;
    }
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        match b {
            b'%' | b'\\' => return false,
            0..=0x20 | 0x7f..=0xff => return false,
            b'/' => {
                // `//`, `/.` + (`/` | end), `/..` + (`/` | end)
                let rest = &path[i + 1..];
                match rest {
                    [b'/', ..]
                    | [b'.']
                    | [b'.', b'/', ..]
                    | [b'.', b'.']
                    | [b'.', b'.', b'/', ..] => {
                        return false;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        i += 1;
    }
    true
}

/// Normalizes a request path (without its query). Borrows when the path is
/// already normal.
///
/// ```
/// use gwcore::table::path::normalize;
/// assert_eq!(normalize("/a//b/./c/../%7Ed").unwrap(), "/a/b/~d");
/// assert_eq!(normalize("/keys/a%2fb").unwrap(), "/keys/a%2Fb");
/// assert!(normalize("/a\\b").is_err());
/// ```
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if path.is_empty() {
        return Ok(Cow::Borrowed("/"));
    }
    let bytes = path.as_bytes();
    if is_normal(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    if bytes[0] != b'/' {
        return Err(PathError::NotOriginForm);
    }
    // Pass 1: escapes and characters.
    let mut buf: Vec<u8> = Vec::with_capacity(bytes.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadPercentEncoding);
                };
                let v = h * 16 + l;
                if is_unreserved(v) {
                    buf.push(v);
                } else {
                    buf.extend_from_slice(&[b'%', HEX_UPPER[h as usize], HEX_UPPER[l as usize]]);
                }
                i += 3;
                continue;
            }
            b'\\' => return Err(PathError::Backslash),
            0..=0x20 | 0x7f => return Err(PathError::ControlCharacter),
            0x80..=0xff => {
                buf.extend_from_slice(&[
                    b'%',
                    HEX_UPPER[(b >> 4) as usize],
                    HEX_UPPER[(b & 15) as usize],
                ]);
            }
            _ => buf.push(b),
        }
        i += 1;
    }
    // Pass 2: merge slashes, remove dot segments.
    Ok(Cow::Owned(merge_and_remove_dots(&buf)))
}

/// Pass 2 of [`normalize`] on a path of ASCII bytes starting with `/`:
/// repeated `/` merged, dot segments removed, a trailing `/` kept.
fn merge_and_remove_dots(buf: &[u8]) -> String {
    let segments: Vec<&[u8]> = buf.split(|&c| c == b'/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut out: Vec<&[u8]> = Vec::with_capacity(segments.len());
    let mut trailing = false;
    for (idx, seg) in segments.iter().enumerate() {
        let is_last = idx == last;
        match *seg {
            b"" | b"." => trailing = is_last,
            b".." => {
                out.pop();
                trailing = is_last;
            }
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut result = String::with_capacity(buf.len());
    for s in &out {
        result.push('/');
        // Every byte of `buf` is ASCII.
        result.extend(s.iter().map(|&c| c as char));
    }
    if out.is_empty() || trailing {
        result.push('/');
    }
    result
}

/// Whether a path holds an encoded `/` (`%2F`) or `\` (`%5C`), in either
/// case.
pub fn has_encoded_separator(path: &str) -> bool {
    path.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && ((w[1] == b'2' && w[2].eq_ignore_ascii_case(&b'f'))
                || (w[1] == b'5' && w[2].eq_ignore_ascii_case(&b'c')))
    })
}

/// The path a backend that decodes escaped separators serves for a
/// normalized `path`: every `%2F` and `%5C` (either case) read as `/`, then
/// repeated `/` merged and dot segments removed again. `None` when the
/// path holds no escaped separator (the backend reads it as it is).
///
/// The result is normalized and holds no escaped separator, so a decoding
/// backend reads it unchanged. Other escapes are left as they are: `%252F`
/// is the three characters `%2F` to a backend that decodes once.
///
/// ```
/// use gwcore::table::path::decode_separators;
/// assert_eq!(decode_separators("/public/..%2Fadmin").as_deref(), Some("/admin"));
/// assert_eq!(decode_separators("/a%5cb%2F").as_deref(), Some("/a/b/"));
/// assert_eq!(decode_separators("/a/b"), None);
/// ```
pub fn decode_separators(path: &str) -> Option<String> {
    if !has_encoded_separator(path) {
        return None;
    }
    let b = path.as_bytes();
    let mut buf = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(&[h, l]) = b.get(i + 1..i + 3)
            && ((h == b'2' && l.eq_ignore_ascii_case(&b'f'))
                || (h == b'5' && l.eq_ignore_ascii_case(&b'c')))
        {
            buf.push(b'/');
            i += 3;
            continue;
        }
        // A normalized path is ASCII; a byte that is not would make
        // `merge_and_remove_dots` write a wrong character, so it is kept
        // encoded as `normalize` would.
        if b[i] >= 0x80 {
            buf.extend_from_slice(&[
                b'%',
                HEX_UPPER[(b[i] >> 4) as usize],
                HEX_UPPER[(b[i] & 15) as usize],
            ]);
        } else {
            buf.push(b[i]);
        }
        i += 1;
    }
    if buf.first() != Some(&b'/') {
        buf.insert(0, b'/');
    }
    Some(merge_and_remove_dots(&buf))
}

/// Splits a normalized path into the segments used by the path trie: the
/// leading `/` is dropped, and a trailing `/` yields a final empty segment
/// (`/` is `[""]`, `/a/` is `["a", ""]`).
pub(crate) fn segments(path: &str) -> std::str::Split<'_, char> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

/// The segments of a PathPrefix value: its trailing `/` is ignored, so `/`
/// has none and `/a/` is `["a"]`.
#[cfg(test)]
pub(crate) fn prefix_segments(prefix: &str) -> Vec<&str> {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        Vec::new()
    } else {
        segments(trimmed).collect()
    }
}

/// Whether `path` (normalized) matches the PathPrefix `prefix`, element by
/// element, ignoring a trailing `/` of the prefix.
///
/// Spec: "the paths `/abc`, `/abc/`, and `/abc/def` would all match the
/// prefix `/abc`, but the path `/abcd` would not."
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    match path.strip_prefix(p) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_table() {
        let rows: &[(&str, Result<&str, PathError>, &str)] = &[
            ("/", Ok("/"), "root"),
            ("", Ok("/"), "empty is root"),
            ("/a/b", Ok("/a/b"), "already normal"),
            ("/a/b/", Ok("/a/b/"), "trailing slash kept"),
            ("//a///b", Ok("/a/b"), "repeated slashes merged"),
            ("/a/./b", Ok("/a/b"), "dot removed"),
            ("/a/../b", Ok("/b"), "dot-dot removed"),
            ("/../../a", Ok("/a"), "dot-dot stops at root"),
            (
                "/a/b/..",
                Ok("/a/"),
                "final dot-dot leaves a trailing slash",
            ),
            ("/a/b/.", Ok("/a/b/"), "final dot leaves a trailing slash"),
            ("/a/..", Ok("/"), "back to root"),
            ("/a/.b/..c", Ok("/a/.b/..c"), "dots inside names are data"),
            ("/%7euser/%41", Ok("/~user/A"), "unreserved escapes decoded"),
            (
                "/a/%2E%2E/b",
                Ok("/b"),
                "encoded dot segments are dot segments",
            ),
            (
                "/a%2fb",
                Ok("/a%2Fb"),
                "encoded slash kept as data, hex upper-cased",
            ),
            ("/a%5Cb", Ok("/a%5Cb"), "encoded backslash kept as data"),
            (
                "/a%2F..%2Fb",
                Ok("/a%2F..%2Fb"),
                "encoded slash does not make dot segments",
            ),
            ("/caf\u{e9}", Ok("/caf%C3%A9"), "non-ASCII encoded"),
            ("/a%zz", Err(PathError::BadPercentEncoding), "bad escape"),
            ("/a%4", Err(PathError::BadPercentEncoding), "short escape"),
            ("/a\\b", Err(PathError::Backslash), "raw backslash"),
            ("/a b", Err(PathError::ControlCharacter), "space"),
            ("/a\u{1}", Err(PathError::ControlCharacter), "control"),
            ("*", Err(PathError::NotOriginForm), "asterisk form"),
        ];
        for (input, want, msg) in rows {
            let got = normalize(input);
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "{msg}: {input:?}");
        }
    }

    #[test]
    fn normal_paths_are_borrowed() {
        assert!(matches!(normalize("/a/b.c/d"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/a//b"), Ok(Cow::Owned(_))));
    }

    #[test]
    fn normalization_is_idempotent() {
        for p in ["/a/../b/./c//", "/%2e%2E/x%2f", "/x/%7E/..", "/\u{e9}/."] {
            let once = normalize(p).unwrap().into_owned();
            assert_eq!(normalize(&once).unwrap(), once, "{p}");
        }
    }

    #[test]
    fn prefix_is_element_wise() {
        assert!(prefix_matches("/abc", "/abc"));
        assert!(prefix_matches("/abc", "/abc/"));
        assert!(prefix_matches("/abc", "/abc/def"));
        assert!(prefix_matches("/abc/", "/abc"));
        assert!(!prefix_matches("/abc", "/abcd"));
        assert!(prefix_matches("/", "/anything"));
        assert_eq!(prefix_segments("/"), Vec::<&str>::new());
        assert_eq!(prefix_segments("/a/b/"), vec!["a", "b"]);
        assert_eq!(segments("/").collect::<Vec<_>>(), vec![""]);
        assert_eq!(segments("/a/").collect::<Vec<_>>(), vec!["a", ""]);
    }
}
