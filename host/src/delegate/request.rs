//! The rules every delegated request obeys, checked once when it leaves the guest.

use std::fmt;

use super::DelegateError;

/// HTTP methods a tool may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Method {
    /// The method as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Size limits for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Longest path, in bytes.
    pub max_path_bytes: usize,
    /// Most headers.
    pub max_headers: usize,
    /// Most bytes in all header names and values together.
    pub max_header_bytes: usize,
    /// Most query pairs.
    pub max_query_pairs: usize,
    /// Most bytes in all query names and values together.
    pub max_query_bytes: usize,
    /// Largest body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_path_bytes: 2048,
            max_headers: 32,
            max_header_bytes: 16 * 1024,
            max_query_pairs: 64,
            max_query_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Bytes a `(String, String)` pair takes in host memory besides its text, as
/// wasmtime counts it while copying a list of pairs out of the guest.
const PAIR_BYTES: usize = 48;

impl RequestLimits {
    /// The largest request that passes these limits, counted as the host
    /// holds it: the sandbox copies no more than this out of a guest for one
    /// `delegate.fetch`.
    pub fn max_total_bytes(&self) -> usize {
        self.max_path_bytes
            .saturating_add(self.max_header_bytes)
            .saturating_add(self.max_headers.saturating_mul(PAIR_BYTES))
            .saturating_add(self.max_query_bytes)
            .saturating_add(self.max_query_pairs.saturating_mul(PAIR_BYTES))
            .saturating_add(self.max_body_bytes)
    }
}

fn pair_bytes(pairs: &[(String, String)]) -> usize {
    pairs
        .iter()
        .map(|(n, v)| n.len().saturating_add(v.len()))
        .fold(0, usize::saturating_add)
}

/// Refuse a list of pairs over its count or byte limit, naming which.
fn check_pairs(
    what: &str,
    pairs: &[(String, String)],
    max_count: usize,
    max_bytes: usize,
) -> Result<(), DelegateError> {
    if pairs.len() > max_count {
        return Err(DelegateError::LimitExceeded(format!(
            "the request has {} {what}; the limit is {max_count}",
            pairs.len()
        )));
    }
    let bytes = pair_bytes(pairs);
    if bytes > max_bytes {
        return Err(DelegateError::LimitExceeded(format!(
            "the request's {what} are {bytes} bytes; the limit is {max_bytes}"
        )));
    }
    Ok(())
}

/// Headers a guest may never set: credentials are the host's job, routing and
/// framing are the HTTP client's, and the identity header is the host's alone.
const FORBIDDEN_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "forwarded",
    "airlock-envelope",
    // Method and URL overrides that many servers and proxies act on.
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
];

/// Header-name prefixes a guest may never use.
const FORBIDDEN_HEADER_PREFIXES: &[&str] = &["proxy-", "x-forwarded-", "airlock-"];

/// A request that passed the rules: a relative path with no tricks, headers a
/// guest may set, and a bounded body. Only [`OutboundRequest::new`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn invalid(msg: impl Into<String>) -> DelegateError {
    DelegateError::InvalidRequest(msg.into())
}

fn check_path(path: &str, limits: &RequestLimits) -> Result<(), DelegateError> {
    if path.len() > limits.max_path_bytes {
        return Err(invalid(format!(
            "the path is {} bytes; the limit is {}",
            path.len(),
            limits.max_path_bytes
        )));
    }
    if !path.starts_with('/') || path.starts_with("//") {
        return Err(invalid(
            "the path must be relative to the service, starting with a single `/` (absolute URLs are refused)",
        ));
    }
    if let Some(c) = path
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || matches!(c, '\\' | '?' | '#'))
    {
        return Err(invalid(format!(
            "the path contains {c:?}; put query parameters in `query` and percent-encode the rest"
        )));
    }
    let decoded_dots = |seg: &str| {
        let lower = seg.to_ascii_lowercase();
        let plain = lower.replace("%2e", ".");
        plain == "." || plain == ".."
    };
    if path.split('/').any(decoded_dots) {
        return Err(invalid("the path may not contain `.` or `..` segments"));
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return Err(invalid("the path may not contain encoded slashes"));
    }
    // Servers and proxies disagree on these; none is needed to name a
    // resource under the service, and each has been used to reach another.
    if lower.contains("%2e") {
        return Err(invalid("the path may not contain encoded dots"));
    }
    if lower.contains("%25") {
        return Err(invalid(
            "the path may not contain an encoded `%` (double encoding)",
        ));
    }
    if path.contains(';') || lower.contains("%3b") {
        return Err(invalid("the path may not contain `;` path parameters"));
    }
    Ok(())
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn check_header(name: &str, value: &str) -> Result<(), DelegateError> {
    if name.is_empty() || !name.chars().all(is_token_char) {
        return Err(invalid(format!("`{name}` is not a valid header name")));
    }
    let lower = name.to_ascii_lowercase();
    if FORBIDDEN_HEADERS.contains(&lower.as_str())
        || FORBIDDEN_HEADER_PREFIXES
            .iter()
            .any(|p| lower.starts_with(p))
    {
        return Err(invalid(format!(
            "header `{name}` may not be set by a tool; the host sets credentials and connection headers"
        )));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(invalid(format!(
            "the value of header `{name}` contains control characters"
        )));
    }
    Ok(())
}

impl OutboundRequest {
    /// Check a guest's request against the rules.
    pub fn new(
        method: Method,
        path: String,
        query: Vec<(String, String)>,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
        limits: &RequestLimits,
    ) -> Result<Self, DelegateError> {
        check_path(&path, limits)?;
        check_pairs(
            "headers",
            &headers,
            limits.max_headers,
            limits.max_header_bytes,
        )?;
        check_pairs(
            "query pairs",
            &query,
            limits.max_query_pairs,
            limits.max_query_bytes,
        )?;
        for (name, value) in &headers {
            check_header(name, value)?;
        }
        let body = body.unwrap_or_default();
        if body.len() > limits.max_body_bytes {
            return Err(DelegateError::LimitExceeded(format!(
                "the request body is {} bytes; the limit is {}",
                body.len(),
                limits.max_body_bytes
            )));
        }
        if matches!(method, Method::Get | Method::Head) && !body.is_empty() {
            return Err(invalid(format!("a {method} request may not have a body")));
        }
        Ok(OutboundRequest {
            method,
            path,
            query,
            headers,
            body,
        })
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }
    /// The path, relative to the service's base URL.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// Query parameters, not yet encoded.
    pub fn query(&self) -> &[(String, String)] {
        &self.query
    }
    /// Headers the guest set.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
    /// The body (empty when none).
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, headers: &[(&str, &str)]) -> Result<OutboundRequest, DelegateError> {
        OutboundRequest::new(
            Method::Get,
            path.into(),
            vec![],
            headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            None,
            &RequestLimits::default(),
        )
    }

    #[test]
    fn relative_paths_pass() {
        assert!(req("/notes", &[]).is_ok());
        assert!(req("/notes/a-1/items", &[("accept", "application/json")]).is_ok());
    }

    #[test]
    fn escapes_from_the_service_base_are_refused() {
        for path in [
            "http://evil.example/",
            "//evil.example/x",
            "notes",
            "/a/../admin",
            "/a/%2e%2E/admin",
            "/a/%2fetc",
            "/a/..;/admin",
            "/a/;x=1/b",
            "/a/%3b/b",
            "/a/%252e%252e/admin",
            "/a/%25/b",
            "/a/.%2e/admin",
            "/a/%2e./admin",
            "/a/x%2ejson",
            "/a\\b",
            "/a?x=1",
            "/a#f",
            "/a b",
            "/a\r\nHost: x",
            "",
        ] {
            let err = req(path, &[]).unwrap_err();
            assert!(
                matches!(err, DelegateError::InvalidRequest(_)),
                "{path:?}: {err:?}"
            );
        }
    }

    #[test]
    fn credential_and_hop_by_hop_headers_are_refused() {
        for name in [
            "Authorization",
            "cookie",
            "Host",
            "Proxy-Authorization",
            "Connection",
            "Transfer-Encoding",
            "X-Forwarded-For",
            "Airlock-Envelope",
            "X-Original-URL",
            "x-rewrite-url",
            "X-HTTP-Method-Override",
            "X-Method-Override",
            "bad header",
        ] {
            let err = req("/x", &[(name, "v")]).unwrap_err();
            assert!(
                matches!(err, DelegateError::InvalidRequest(_)),
                "{name}: {err:?}"
            );
        }
        let err = req("/x", &[("x-ok", "a\r\nb")]).unwrap_err();
        assert!(matches!(err, DelegateError::InvalidRequest(_)));
    }

    #[test]
    fn bodies_are_bounded() {
        let limits = RequestLimits {
            max_body_bytes: 4,
            ..RequestLimits::default()
        };
        let err = OutboundRequest::new(
            Method::Post,
            "/x".into(),
            vec![],
            vec![],
            Some(vec![0; 5]),
            &limits,
        )
        .unwrap_err();
        assert!(matches!(err, DelegateError::LimitExceeded(_)));
    }

    #[test]
    fn header_and_query_lists_are_bounded_in_count_and_bytes() {
        let limits = RequestLimits::default();
        let pairs = |n: usize, len: usize| -> Vec<(String, String)> {
            (0..n)
                .map(|_| ("x-a".to_string(), "v".repeat(len)))
                .collect()
        };
        let send = |headers, query| {
            OutboundRequest::new(Method::Get, "/x".into(), query, headers, None, &limits)
        };
        assert!(send(pairs(32, 10), pairs(64, 10)).is_ok());
        for (headers, query, says) in [
            (pairs(33, 0), vec![], "33 headers; the limit is 32"),
            (pairs(2, 9000), vec![], "headers are 18006 bytes"),
            (vec![], pairs(65, 0), "65 query pairs; the limit is 64"),
            (vec![], pairs(1, 9000), "query pairs are 9003 bytes"),
        ] {
            match send(headers, query) {
                Err(DelegateError::LimitExceeded(m)) => assert!(m.contains(says), "{m}"),
                other => panic!("expected a limit error naming {says:?}, got {other:?}"),
            }
        }
    }
}

#[cfg(test)]
mod path_properties {
    use super::*;

    /// Every way of writing a step out of `/allowed` with the characters that
    /// matter, one or two levels of percent-encoding, each case: refused, or
    /// (if accepted) still under `/allowed` once decoded any number of times.
    #[test]
    fn no_encoding_of_a_parent_step_passes() {
        let dot = [".", "%2e", "%2E", "%252e", "%25%32%65"];
        let slash = ["/", "%2f", "%2F", "%252f", "\\", "%5c"];
        let mut tried = 0;
        for a in dot {
            for b in dot {
                for s in slash {
                    for tail in ["", ";", ";x", "%3b"] {
                        let path = format!("/allowed/{a}{b}{tail}{s}admin");
                        tried += 1;
                        let result = OutboundRequest::new(
                            Method::Get,
                            path.clone(),
                            vec![],
                            vec![],
                            None,
                            &RequestLimits::default(),
                        );
                        if result.is_ok() {
                            let mut decoded = path.clone();
                            for _ in 0..3 {
                                decoded = percent_decode(&decoded);
                            }
                            assert!(
                                !decoded.contains("/..") && !decoded.contains("\\"),
                                "{path} passed and decodes to {decoded}"
                            );
                        }
                    }
                }
            }
        }
        assert_eq!(tried, 5 * 5 * 6 * 4);
    }

    /// The pieces an escape is made of: dots, slashes and backslashes, raw
    /// or percent-encoded once or twice in either case, `;` parameters, and
    /// plain names.
    const PIECES: &[&str] = &[
        ".",
        "..",
        "%2e",
        "%2E",
        "%252e",
        "%252E",
        "%25%32%65",
        "/",
        "%2f",
        "%2F",
        "%252f",
        "%5c",
        "%5C",
        "\\",
        ";",
        "%3b",
        "%3B",
        "%25",
        "%",
        "a",
        "b",
        "admin",
        "x.y",
    ];

    /// Where a server would take `path` after one way of normalising it:
    /// `\` as `/`, `;` parameters dropped from each segment, empty segments
    /// kept or collapsed, `.` and `..` resolved (never above the root): the
    /// segments it names.
    fn resolve(path: &str, collapse_empty: bool) -> Vec<String> {
        let path = path.replace('\\', "/");
        let mut stack: Vec<String> = Vec::new();
        for segment in path.split('/').skip(1) {
            let segment = segment.split(';').next().unwrap_or_default();
            match segment {
                "." => {}
                ".." => {
                    stack.pop();
                }
                "" if collapse_empty => {}
                other => stack.push(other.to_string()),
            }
        }
        stack
    }

    /// Whether `path`, decoded zero to three times and normalised each way,
    /// is still `/allowed` or below it.
    fn stays_under_allowed(path: &str) -> bool {
        let mut decoded = path.to_string();
        for _ in 0..4 {
            for collapse in [false, true] {
                let resolved = resolve(&decoded, collapse);
                if resolved.first().map(String::as_str) != Some("allowed") {
                    return false;
                }
            }
            decoded = percent_decode(&decoded);
        }
        true
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2000))]

        /// Any path built under the allowed prefix from the pieces above that
        /// the request rules accept stays under it however it is decoded and
        /// normalised (the broker's prefix check compares the path as sent).
        #[test]
        fn no_path_the_rules_accept_leaves_its_prefix(
            pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..14)
        ) {
            let path = format!("/allowed/{}", pieces.concat());
            let accepted = OutboundRequest::new(
                Method::Get,
                path.clone(),
                vec![],
                vec![],
                None,
                &RequestLimits::default(),
            )
            .is_ok();
            proptest::prop_assert!(
                !accepted || stays_under_allowed(&path),
                "{} was accepted but leaves /allowed",
                path
            );
        }
    }

    fn percent_decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes.get(i), hex) {
                (Some(b'%'), Some(v)) => {
                    out.push(v);
                    i += 3;
                }
                (Some(b), _) => {
                    out.push(*b);
                    i += 1;
                }
                (None, _) => break,
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
