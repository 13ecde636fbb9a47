//! W3C Trace Context (`traceparent`): the trace id of a request, taken from
//! the caller when it sent a valid one, else new; echoed on the response so a
//! client can find its call in logs and audit records.

use axum::http::{HeaderMap, HeaderValue};

/// The request's header name.
pub(super) const TRACEPARENT: &str = "traceparent";

/// The trace a request belongs to, and the host's own span in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: String,
    span_id: String,
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        // Never all zeros (invalid in W3C); uniqueness matters less than validity.
        buf.fill(0x5a);
    }
    hex::encode(buf)
}

impl TraceContext {
    /// The caller's trace when `headers` carry one valid `traceparent`, else a
    /// new trace. Either way the host's span id is new.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let incoming = match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().ok().and_then(parse_trace_id),
            // Several `traceparent` headers are invalid: start a new trace.
            _ => None,
        };
        TraceContext {
            trace_id: incoming.unwrap_or_else(|| random_hex(16)),
            span_id: random_hex(8),
        }
    }

    /// The 32-hex-digit trace id.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The `traceparent` value naming the host's span.
    pub fn header_value(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!("00-{}-{}-01", self.trace_id, self.span_id)).ok()
    }
}

/// The trace id of a valid `traceparent` (version 00, or a later version read
/// as 00 as the spec says), or `None`.
fn parse_trace_id(value: &str) -> Option<String> {
    let value = value.trim();
    let mut parts = value.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let rest = parts.next();
    if !is_lower_hex(version, 2) || version == "ff" {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if version == "00" && rest.is_some() {
        return None;
    }
    if !is_lower_hex(trace, 32) || trace.bytes().all(|b| b == b'0') {
        return None;
    }
    if !is_lower_hex(parent, 16) || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    if !is_lower_hex(flags, 2) {
        return None;
    }
    Some(trace.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&str]) -> TraceContext {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(TRACEPARENT, HeaderValue::from_str(v).unwrap());
        }
        TraceContext::from_headers(&headers)
    }

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_continued() {
        let t = with(&[GOOD]);
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let echoed = t.header_value().unwrap();
        let echoed = echoed.to_str().unwrap();
        assert!(echoed.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(
            !echoed.contains("00f067aa0ba902b7"),
            "the host's span is its own"
        );
        assert_eq!(parse_trace_id(echoed), Some(t.trace_id().to_string()));
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            let t = with(&[bad]);
            assert_ne!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736", "{bad:?}");
            assert!(parse_trace_id(t.header_value().unwrap().to_str().unwrap()).is_some());
        }
        // Two headers are ambiguous: new trace.
        assert_ne!(
            with(&[GOOD, GOOD]).trace_id(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        // A later version with extra fields is read as version 00.
        let later = format!("01-{}-extra", &GOOD[3..]);
        assert_eq!(
            with(&[&later]).trace_id(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn new_traces_differ() {
        assert_ne!(with(&[]).trace_id(), with(&[]).trace_id());
        assert_eq!(with(&[]).trace_id().len(), 32);
    }
}
