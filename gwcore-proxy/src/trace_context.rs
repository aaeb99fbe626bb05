//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the
//! `traceparent` header parsed and written, and `tracestate` bounded.
//!
//! Pure functions on bytes, no I/O: [`TraceParent::parse`] takes a header
//! value as the spec's version `00` defines it, [`TraceParent::to_header`]
//! writes one; [`bounded_tracestate`] keeps a `tracestate` within
//! [`TRACESTATE_MAX_BYTES`]. What the proxy does with them (propagation,
//! spans) is in [`crate::tracing_otel`].

use http::HeaderValue;

/// The `traceparent` header.
pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
/// The `tracestate` header.
pub const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// The largest `tracestate` sent on: W3C Trace Context §3.3.1.5 asks for
/// at least 512 characters to be propagated; beyond that, whole entries are
/// dropped from the end.
pub const TRACESTATE_MAX_BYTES: usize = 512;

/// The `sampled` bit of the trace flags.
pub const FLAG_SAMPLED: u8 = 0x01;

/// A valid `traceparent`: `00-<trace id>-<parent id>-<flags>`, neither id
/// all zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace's 16-byte id.
    pub trace_id: [u8; 16],
    /// The caller's 8-byte span id (the parent of the next span).
    pub parent_id: [u8; 8],
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

/// The length of a version `00` `traceparent`.
const LEN: usize = 55;

impl TraceParent {
    /// Parses a `traceparent` value. Version `00` must be exactly
    /// 55 characters (§3.2.2); a higher version is read by its first
    /// 55 characters when a `-` or the end follows them (§3.2.4, "future
    /// versions"); version `ff` is invalid. Hex is lower case; ids of all
    /// zeros are refused. `None` for anything else: the caller starts a
    /// new trace.
    pub fn parse(value: &[u8]) -> Option<TraceParent> {
        if value.len() < LEN {
            return None;
        }
        let version = hex_byte(&value[0..2])?;
        if version == 0xff
            || (version == 0 && value.len() != LEN)
            || (value.len() > LEN && value[LEN] != b'-')
        {
            return None;
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, b) in trace_id.iter_mut().enumerate() {
            *b = hex_byte(&value[3 + 2 * i..5 + 2 * i])?;
        }
        let mut parent_id = [0u8; 8];
        for (i, b) in parent_id.iter_mut().enumerate() {
            *b = hex_byte(&value[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&value[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The `traceparent` of the header map: `None` when there is none,
    /// more than one, or it is invalid.
    pub fn from_headers(headers: &http::HeaderMap) -> Option<TraceParent> {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let first = values.next()?;
        if values.next().is_some() {
            return None;
        }
        TraceParent::parse(first.as_bytes())
    }

    /// Whether the caller sampled the trace.
    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// The version `00` header value.
    pub fn to_header(&self) -> HeaderValue {
        let mut buf = [0u8; LEN];
        buf[0..2].copy_from_slice(b"00");
        buf[2] = b'-';
        write_hex(&mut buf[3..35], &self.trace_id);
        buf[35] = b'-';
        write_hex(&mut buf[36..52], &self.parent_id);
        buf[52] = b'-';
        write_hex(&mut buf[53..55], &[self.flags]);
        // Lower-case hex digits and dashes are all visible ASCII.
        HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The trace id in the 32 lower-case hex digits of the header (for the
    /// access log).
    pub fn trace_id_hex(&self) -> TraceIdHex {
        let mut buf = [0u8; 32];
        write_hex(&mut buf, &self.trace_id);
        TraceIdHex(buf)
    }
}

/// A trace id as 32 lower-case hex digits, written without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceIdHex([u8; 32]);

impl TraceIdHex {
    /// The digits.
    pub fn as_str(&self) -> &str {
        // Only hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::fmt::Display for TraceIdHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for TraceIdHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lower-case hex pair (the spec refuses upper case: §3.2.2.1).
fn hex_byte(pair: &[u8]) -> Option<u8> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
}

/// The `tracestate` to send on: the request's header lines joined by
/// commas (§3.3.1.1 lets a list be split over lines) when they fit in
/// [`TRACESTATE_MAX_BYTES`]; otherwise as many whole entries from the
/// front as fit (§3.3.1.5: entries are dropped from the end). `None` when
/// there is none, or nothing fits.
pub fn bounded_tracestate(headers: &http::HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(TRACESTATE).iter();
    let first = values.next()?;
    let rest = values.next();
    if rest.is_none() && first.len() <= TRACESTATE_MAX_BYTES {
        return Some(first.clone());
    }
    let mut out: Vec<u8> = Vec::with_capacity(TRACESTATE_MAX_BYTES);
    for line in std::iter::once(first)
        .chain(rest)
        .chain(values)
        .map(HeaderValue::as_bytes)
    {
        for entry in line.split(|&b| b == b',') {
            let entry = entry.trim_ascii();
            if entry.is_empty() {
                continue;
            }
            let extra = entry.len() + usize::from(!out.is_empty());
            if out.len() + extra > TRACESTATE_MAX_BYTES {
                return HeaderValue::from_bytes(&out).ok().filter(|v| !v.is_empty());
            }
            if !out.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(entry);
        }
    }
    HeaderValue::from_bytes(&out).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specs_example() {
        let tp = TraceParent::parse(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(
            tp.trace_id,
            [
                0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
                0x47, 0x36
            ]
        );
        assert_eq!(
            tp.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(tp.sampled());
        assert_eq!(tp.to_header(), EXAMPLE);
        assert_eq!(
            tp.trace_id_hex().as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn invalid_forms_are_refused() {
        for bad in [
            "",
            "00",
            // all-zero trace id, all-zero parent id
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // upper case
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // version ff, a non-hex version
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // version 00 with more after it
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            // short ids, wrong separators, non-hex flags
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            // a future version with something else than a dash after the flags
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn future_versions_are_read_by_their_version_00_part() {
        let tp = TraceParent::parse(
            b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
        )
        .unwrap();
        assert_eq!(tp.to_header(), EXAMPLE);
    }

    #[test]
    fn two_traceparent_headers_are_invalid() {
        let mut h = http::HeaderMap::new();
        h.append(TRACEPARENT, HeaderValue::from_static(EXAMPLE));
        assert!(TraceParent::from_headers(&h).is_some());
        h.append(TRACEPARENT, HeaderValue::from_static(EXAMPLE));
        assert_eq!(TraceParent::from_headers(&h), None);
    }

    #[test]
    fn tracestate_is_kept_or_cut_by_whole_entries() {
        let mut h = http::HeaderMap::new();
        assert_eq!(bounded_tracestate(&h), None);
        h.append(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
        h.append(
            TRACESTATE,
            HeaderValue::from_static("rojo=00f067aa0ba902b7"),
        );
        assert_eq!(
            bounded_tracestate(&h).unwrap(),
            "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        );
        let long = (0..40)
            .map(|i| format!("vendor{i:02}=value{i:04}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(long.len() > TRACESTATE_MAX_BYTES);
        let mut h = http::HeaderMap::new();
        h.insert(TRACESTATE, HeaderValue::from_str(&long).unwrap());
        let cut = bounded_tracestate(&h).unwrap();
        let cut = cut.to_str().unwrap();
        assert!(cut.len() <= TRACESTATE_MAX_BYTES);
        assert!(long.starts_with(cut));
        assert!(long[cut.len()..].starts_with(','), "whole entries only");
    }

    proptest! {
        #[test]
        fn round_trip(
            trace_id in any::<[u8; 16]>().prop_filter("not zero", |t| *t != [0; 16]),
            parent_id in any::<[u8; 8]>().prop_filter("not zero", |p| *p != [0; 8]),
            flags in any::<u8>(),
        ) {
            let tp = TraceParent { trace_id, parent_id, flags };
            let header = tp.to_header();
            prop_assert_eq!(header.len(), LEN);
            prop_assert_eq!(TraceParent::parse(header.as_bytes()), Some(tp));
        }

        #[test]
        fn any_one_byte_changed_to_a_non_hex_is_refused(
            at in 0usize..LEN,
            byte in any::<u8>().prop_filter("not a hex digit or dash", |b| !b.is_ascii_digit() && !(b'a'..=b'f').contains(b) && *b != b'-'),
        ) {
            let mut v = EXAMPLE.as_bytes().to_vec();
            v[at] = byte;
            prop_assert_eq!(TraceParent::parse(&v), None);
        }

        #[test]
        fn parsing_never_panics(v in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = TraceParent::parse(&v);
        }
    }
}
