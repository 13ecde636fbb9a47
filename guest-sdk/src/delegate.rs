//! Requests to services, made by the host on the tool's behalf.
//!
//! A tool names a service (as configured for its tenant) and a path; the host
//! decides whether the call may go out, attaches the credential and audits it.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ctx::Backend;
use crate::error::ToolError;
use crate::wit::airlock::tool::delegate as wit;

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
    /// The method as it appears on the wire.
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

/// A request as the tool built it. Mocks receive this value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The service the request is for.
    pub service: String,
    /// The method.
    pub method: Method,
    /// Path relative to the service's base URL.
    pub path: String,
    /// Query parameters.
    pub query: Vec<(String, String)>,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
}

impl Request {
    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, DelegateError> {
        serde_json::from_slice(self.body.as_deref().unwrap_or_default())
            .map_err(|e| DelegateError::Decode(e.to_string()))
    }
}

/// Why a delegated request produced no usable response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DelegateError {
    /// This call may not reach the service.
    NotGranted(String),
    /// The user has not connected an account with the service.
    NotConnected(String),
    /// Host policy refused the request.
    DeniedByPolicy(String),
    /// A per-call limit was reached.
    LimitExceeded(String),
    /// The service did not answer in time.
    Timeout,
    /// The service could not be reached or answered badly.
    Upstream(String),
    /// The request was malformed.
    InvalidRequest(String),
    /// The service answered with an error status ([`Response::error_for_status`]).
    Status {
        /// The status code.
        status: u16,
        /// The start of the body, for the message.
        body: String,
    },
    /// The response body was not what the tool expected.
    Decode(String),
}

impl fmt::Display for DelegateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The host's messages are complete sentences; pass them on as they are.
            DelegateError::NotGranted(m)
            | DelegateError::NotConnected(m)
            | DelegateError::DeniedByPolicy(m)
            | DelegateError::LimitExceeded(m)
            | DelegateError::Upstream(m)
            | DelegateError::InvalidRequest(m) => f.write_str(m),
            DelegateError::Timeout => write!(f, "the service did not answer in time"),
            DelegateError::Status { status, body } => {
                write!(f, "service answered {status}: {body}")
            }
            DelegateError::Decode(m) => write!(f, "could not decode the response: {m}"),
        }
    }
}

impl std::error::Error for DelegateError {}

impl From<wit::DelegateError> for DelegateError {
    fn from(e: wit::DelegateError) -> Self {
        match e {
            wit::DelegateError::NotGranted(m) => DelegateError::NotGranted(m),
            wit::DelegateError::NotConnected(m) => DelegateError::NotConnected(m),
            wit::DelegateError::DeniedByPolicy(m) => DelegateError::DeniedByPolicy(m),
            wit::DelegateError::LimitExceeded(m) => DelegateError::LimitExceeded(m),
            wit::DelegateError::Timeout => DelegateError::Timeout,
            wit::DelegateError::Upstream(m) => DelegateError::Upstream(m),
            wit::DelegateError::InvalidRequest(m) => DelegateError::InvalidRequest(m),
        }
    }
}

/// A service's answer. Non-2xx statuses are responses; see [`Response::error_for_status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status` and a JSON body (for mocks).
    pub fn json_body<T: Serialize>(status: u16, value: &T) -> Self {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, DelegateError> {
        serde_json::from_slice(&self.body).map_err(|e| DelegateError::Decode(e.to_string()))
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<String, DelegateError> {
        String::from_utf8(self.body.clone()).map_err(|e| DelegateError::Decode(e.to_string()))
    }

    /// `Err(DelegateError::Status)` unless the status is 2xx.
    pub fn error_for_status(self) -> Result<Self, DelegateError> {
        if self.is_success() {
            return Ok(self);
        }
        let mut body = String::from_utf8_lossy(&self.body).into_owned();
        if body.len() > 200 {
            let cut = (0..=200)
                .rev()
                .find(|i| body.is_char_boundary(*i))
                .unwrap_or(0);
            body.truncate(cut);
        }
        Err(DelegateError::Status {
            status: self.status,
            body,
        })
    }
}

/// A handle for one service; start a request with a method.
#[derive(Debug)]
pub struct Service<'a> {
    pub(crate) backend: &'a Backend,
    pub(crate) name: String,
}

impl<'a> Service<'a> {
    /// Start a request with `method` to `path` (relative to the service's base URL).
    pub fn request(&self, method: Method, path: impl Into<String>) -> RequestBuilder<'a> {
        RequestBuilder {
            backend: self.backend,
            request: Request {
                service: self.name.clone(),
                method,
                path: path.into(),
                query: Vec::new(),
                headers: Vec::new(),
                body: None,
            },
        }
    }

    /// Start a GET request.
    pub fn get(&self, path: impl Into<String>) -> RequestBuilder<'a> {
        self.request(Method::Get, path)
    }

    /// Start a POST request.
    pub fn post(&self, path: impl Into<String>) -> RequestBuilder<'a> {
        self.request(Method::Post, path)
    }

    /// Start a PUT request.
    pub fn put(&self, path: impl Into<String>) -> RequestBuilder<'a> {
        self.request(Method::Put, path)
    }

    /// Start a PATCH request.
    pub fn patch(&self, path: impl Into<String>) -> RequestBuilder<'a> {
        self.request(Method::Patch, path)
    }

    /// Start a DELETE request.
    pub fn delete(&self, path: impl Into<String>) -> RequestBuilder<'a> {
        self.request(Method::Delete, path)
    }
}

/// Builds one delegated request; finish with [`RequestBuilder::send`].
#[derive(Debug)]
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder<'a> {
    backend: &'a Backend,
    request: Request,
}

impl RequestBuilder<'_> {
    /// Add a query parameter.
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.request.query.push((name.into(), value.into()));
        self
    }

    /// Add a header. The host refuses credential and hop-by-hop headers.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.request.headers.push((name.into(), value.into()));
        self
    }

    /// Set a raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.request.body = Some(body.into());
        self
    }

    /// Set a JSON body and its content type.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, ToolError> {
        let body = serde_json::to_vec(value)
            .map_err(|e| ToolError::Internal(format!("could not encode the request body: {e}")))?;
        self.request.body = Some(body);
        self.request
            .headers
            .push(("content-type".into(), "application/json".into()));
        Ok(self)
    }

    /// Send the request through the host.
    pub fn send(self) -> Result<Response, DelegateError> {
        self.backend.fetch(self.request)
    }
}

pub(crate) fn fetch_from_host(request: Request) -> Result<Response, DelegateError> {
    let method = match request.method {
        Method::Get => wit::Method::Get,
        Method::Head => wit::Method::Head,
        Method::Post => wit::Method::Post,
        Method::Put => wit::Method::Put,
        Method::Patch => wit::Method::Patch,
        Method::Delete => wit::Method::Delete,
    };
    let req = wit::Request {
        method,
        path: request.path,
        query: request.query,
        headers: request.headers,
        body: request.body,
    };
    let resp = wit::fetch(&request.service, &req)?;
    Ok(Response {
        status: resp.status,
        headers: resp.headers,
        body: resp.body,
    })
}
