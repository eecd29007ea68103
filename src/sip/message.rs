//! SIP message parsing and printing (RFC 3261 section 7 and 25), sans-IO.
//!
//! [`parse`] takes bytes from a datagram or a stream and returns a [`Message`] plus how many bytes
//! it used. Header names are stored in their full form (compact forms such as `v`, `i`, `l` are
//! expanded), folded lines are joined, and headers that may carry a comma-separated list (Via,
//! Contact, Route, Record-Route) are split into one [`Header`] per value, so printing gives one
//! header line per value. [`Message::to_bytes`] prints the message with a Content-Length that
//! matches the body.

use crate::net::parse_params;
pub use crate::net::{Uri, host_for_print, split_host_port};
use std::fmt::Write as _;

use super::SipError;

/// Largest message accepted (bytes of headers plus body).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Largest single header line accepted (after unfolding).
pub const MAX_HEADER_LINE: usize = 8 * 1024;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { code: u16, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Full-form name as it is printed (`Via`, `Call-ID`, or the name as received for others).
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

/// Whether the bytes came as one datagram (UDP) or from a byte stream (TCP/TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Datagram,
    Stream,
}

/// Compact form -> full form (RFC 3261 7.3.3 and later RFCs).
const COMPACT: &[(&str, &str)] = &[
    ("a", "Accept-Contact"),
    ("b", "Referred-By"),
    ("c", "Content-Type"),
    ("e", "Content-Encoding"),
    ("f", "From"),
    ("i", "Call-ID"),
    ("k", "Supported"),
    ("l", "Content-Length"),
    ("m", "Contact"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("s", "Subject"),
    ("t", "To"),
    ("u", "Allow-Events"),
    ("v", "Via"),
];

/// Canonical spelling of well-known headers.
const CANONICAL: &[&str] = &[
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Content-Length",
    "Content-Type",
    "Max-Forwards",
    "Route",
    "Record-Route",
    "Allow",
    "Supported",
    "User-Agent",
    "Server",
    "Retry-After",
    "Accept",
    "Event",
    "Refer-To",
    "Referred-By",
    "Subject",
    "Content-Encoding",
    "Allow-Events",
    "Accept-Contact",
    "Require",
    "Expires",
    "WWW-Authenticate",
    "Authorization",
    "Proxy-Authenticate",
    "Proxy-Authorization",
];

/// Headers whose value may be a comma-separated list that we split into one header per value.
const LIST_HEADERS: &[&str] = &["Via", "Contact", "Route", "Record-Route"];

fn canonical_name(raw: &str) -> String {
    if raw.len() == 1
        && let Some((_, full)) = COMPACT.iter().find(|(c, _)| c.eq_ignore_ascii_case(raw))
    {
        return (*full).to_string();
    }
    CANONICAL
        .iter()
        .find(|c| c.eq_ignore_ascii_case(raw))
        .map(|c| (*c).to_string())
        .unwrap_or_else(|| raw.to_string())
}

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

fn find_subslice(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses one message from the front of `buf`. Returns the message and the bytes consumed.
///
/// With [`Framing::Stream`], `Err(SipError::Incomplete)` means "wait for more bytes", and a
/// missing Content-Length is an error. With [`Framing::Datagram`], bytes past Content-Length are
/// ignored and a Content-Length larger than what arrived is an error.
pub fn parse(buf: &[u8], framing: Framing) -> Result<(Message, usize), SipError> {
    parse_inner(buf, framing, false)
}

/// Parses only the start line and headers of a message [`parse`] rejected, so that a 400 can
/// still be addressed to the sender. The body and Content-Length are ignored, list headers
/// are kept whole, and a request line that does not parse becomes a request with the first
/// word of the line as its method and an empty Request-URI (responses are not guessed at).
pub fn parse_head_only(buf: &[u8]) -> Option<Message> {
    parse_inner(buf, Framing::Datagram, true)
        .ok()
        .map(|(m, _)| m)
}

fn parse_inner(
    buf: &[u8],
    framing: Framing,
    head_only: bool,
) -> Result<(Message, usize), SipError> {
    // Leading CRLFs are keepalives (RFC 5626) and allowed before a message (RFC 3261 7.5).
    let mut start = 0;
    while buf.get(start..start + 2) == Some(b"\r\n") {
        start += 2;
    }
    let rest = &buf[start..];
    // A datagram is all there is: for a 400, headers cut short of the blank line will do.
    let unterminated = (head_only && framing == Framing::Datagram && !rest.is_empty())
        .then(|| rest.len() - usize::from(rest.ends_with(b"\r\n")) * 2);
    let Some(head_end) = find_subslice(rest, b"\r\n\r\n").or(unterminated) else {
        if rest.len() > MAX_MESSAGE {
            return Err(SipError::TooLarge(rest.len()));
        }
        return match framing {
            Framing::Stream => Err(SipError::Incomplete),
            Framing::Datagram if rest.is_empty() => Err(SipError::Empty),
            Framing::Datagram => Err(SipError::Malformed(
                "no blank line after the headers".into(),
            )),
        };
    };
    if head_end > MAX_MESSAGE {
        return Err(SipError::TooLarge(head_end));
    }
    let head = std::str::from_utf8(&rest[..head_end])
        .map_err(|_| SipError::Malformed("headers are not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let start_line = match parse_start_line(first) {
        Ok(s) => s,
        Err(_) if head_only && !first.starts_with("SIP/") => StartLine::Request {
            method: first.split(' ').next().unwrap_or_default().to_string(),
            uri: String::new(),
        },
        Err(e) => return Err(e),
    };

    let mut headers: Vec<Header> = Vec::new();
    let mut current: Option<(String, String)> = None;
    let mut count = 0usize;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            // Folded continuation line: joined with one space.
            let Some((_, value)) = current.as_mut() else {
                return Err(SipError::Malformed(
                    "continuation line before any header".into(),
                ));
            };
            value.push(' ');
            value.push_str(line.trim());
            if value.len() > MAX_HEADER_LINE {
                return Err(SipError::Malformed(format!(
                    "header line longer than {MAX_HEADER_LINE} bytes"
                )));
            }
            continue;
        }
        if let Some((name, value)) = current.take() {
            push_header(&mut headers, name, value, head_only)?;
        }
        count += 1;
        if count > MAX_HEADERS {
            return Err(SipError::Malformed(format!(
                "more than {MAX_HEADERS} headers"
            )));
        }
        if line.len() > MAX_HEADER_LINE {
            return Err(SipError::Malformed(format!(
                "header line longer than {MAX_HEADER_LINE} bytes"
            )));
        }
        let Some(colon) = line.find(':') else {
            return Err(SipError::Malformed(format!(
                "header line without a colon: {:?}",
                truncate(line, 40)
            )));
        };
        let name = line[..colon].trim_end();
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(SipError::Malformed(format!(
                "bad header name {:?}",
                truncate(name, 40)
            )));
        }
        current = Some((canonical_name(name), line[colon + 1..].trim().to_string()));
    }
    if let Some((name, value)) = current.take() {
        push_header(&mut headers, name, value, head_only)?;
    }

    if head_only {
        return Ok((
            Message {
                start: start_line,
                headers,
                body: Vec::new(),
            },
            buf.len(),
        ));
    }
    let body_start = start + head_end + 4;
    let available = buf.len() - body_start;
    let mut declared = None;
    for h in headers.iter().filter(|h| h.name == "Content-Length") {
        let n = h.value.parse::<usize>().map_err(|_| {
            SipError::Malformed(format!("Content-Length is not a number: {:?}", h.value))
        })?;
        // Two lengths that disagree leave no way to frame the message (RFC 4475 3.3.9).
        if declared.is_some_and(|d| d != n) {
            return Err(SipError::Malformed(
                "Content-Length given twice with different values".into(),
            ));
        }
        declared = Some(n);
    }
    let body_len = match (declared, framing) {
        (Some(n), _) if n > MAX_MESSAGE => return Err(SipError::TooLarge(n)),
        (Some(n), Framing::Datagram) if n > available => {
            return Err(SipError::Malformed(format!(
                "Content-Length {n} but only {available} body bytes arrived"
            )));
        }
        (Some(n), Framing::Stream) if n > available => return Err(SipError::Incomplete),
        (Some(n), _) => n,
        (None, Framing::Datagram) => available,
        (None, Framing::Stream) => {
            return Err(SipError::Malformed(
                "Content-Length is required on a stream transport".into(),
            ));
        }
    };
    let body = buf[body_start..body_start + body_len].to_vec();
    let consumed = match framing {
        Framing::Datagram => buf.len(),
        Framing::Stream => body_start + body_len,
    };
    Ok((
        Message {
            start: start_line,
            headers,
            body,
        },
        consumed,
    ))
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn push_header(
    headers: &mut Vec<Header>,
    name: String,
    value: String,
    whole: bool,
) -> Result<(), SipError> {
    if !whole
        && LIST_HEADERS.contains(&name.as_str())
        && !(name == "Contact" && value.trim() == "*")
    {
        for part in split_list(&value) {
            let part = part.trim();
            if part.is_empty() {
                return Err(SipError::Malformed(format!("empty value in {name}")));
            }
            headers.push(Header {
                name: name.clone(),
                value: part.to_string(),
            });
        }
    } else {
        headers.push(Header { name, value });
    }
    Ok(())
}

/// Splits on commas outside quotes and angle brackets.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut in_quotes, mut in_angle, mut escaped) = (false, false, false);
    let mut from = 0;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => in_angle = true,
            '>' if !in_quotes => in_angle = false,
            ',' if !in_quotes && !in_angle => {
                parts.push(&value[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[from..]);
    parts
}

fn parse_start_line(line: &str) -> Result<StartLine, SipError> {
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code
            .parse()
            .ok()
            .filter(|c| (100..=699).contains(c))
            .ok_or_else(|| {
                SipError::Malformed(format!("bad status code {:?}", truncate(code, 10)))
            })?;
        return Ok(StartLine::Response {
            code,
            reason: reason.to_string(),
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SipError::Malformed(format!(
            "bad request line {:?}",
            truncate(line, 60)
        )));
    };
    if method.is_empty() || !method.bytes().all(is_token_char) {
        return Err(SipError::Malformed(format!(
            "bad method {:?}",
            truncate(method, 20)
        )));
    }
    if version != "SIP/2.0" {
        if version.len() > 4 && version[..4].eq_ignore_ascii_case("SIP/") {
            return Err(SipError::UnsupportedVersion(
                truncate(version, 20).to_string(),
            ));
        }
        return Err(SipError::Malformed(format!(
            "bad version {:?}",
            truncate(version, 20)
        )));
    }
    // absoluteURI: scheme ":" ... with scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
    let scheme_ok = uri.split_once(':').is_some_and(|(scheme, rest)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
            && !rest.is_empty()
    });
    if !scheme_ok {
        return Err(SipError::Malformed(format!(
            "bad Request-URI {:?}",
            truncate(uri, 60)
        )));
    }
    // Headers have no place in a SIP Request-URI (RFC 3261 19.1.5; RFC 4475 3.1.2.11).
    let lower = uri.to_ascii_lowercase();
    if (lower.starts_with("sip:") || lower.starts_with("sips:"))
        && uri
            .rsplit('@')
            .next()
            .is_some_and(|host| host.contains('?'))
    {
        return Err(SipError::Malformed(
            "header fields in the Request-URI".into(),
        ));
    }
    Ok(StartLine::Request {
        method: method.to_string(),
        uri: uri.to_string(),
    })
}

impl Message {
    pub fn request(method: &str, uri: &str) -> Message {
        Message {
            start: StartLine::Request {
                method: method.into(),
                uri: uri.into(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// First value of header `name` (full form, case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// All values of header `name`, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    pub fn cseq(&self) -> Option<(u32, &str)> {
        let v = self.header("CSeq")?;
        let (n, m) = v.split_once(|c: char| c.is_ascii_whitespace())?;
        Some((n.parse().ok()?, m.trim()))
    }

    pub fn top_via(&self) -> Option<Via> {
        Via::parse(self.header("Via")?)
    }

    pub fn from(&self) -> Option<NameAddr> {
        NameAddr::parse(self.header("From")?)
    }

    pub fn to(&self) -> Option<NameAddr> {
        NameAddr::parse(self.header("To")?)
    }

    /// Checks the headers every request needs (RFC 3261 8.1.1), each of the single-valued
    /// ones once.
    pub fn check_request(&self) -> Result<(), SipError> {
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            if self.header(name).is_none() {
                return Err(SipError::Malformed(format!("missing {name}")));
            }
        }
        for name in [
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Max-Forwards",
            "Content-Type",
        ] {
            if self.headers_named(name).nth(1).is_some() {
                return Err(SipError::Malformed(format!("more than one {name}")));
            }
        }
        let Some((_, method)) = self.cseq() else {
            return Err(SipError::Malformed("bad CSeq".into()));
        };
        if Some(method) != self.method() {
            return Err(SipError::Malformed(
                "CSeq method does not match the request method".into(),
            ));
        }
        if self.top_via().is_none() {
            return Err(SipError::Malformed("bad Via".into()));
        }
        if self.from().is_none() || self.to().is_none() {
            return Err(SipError::Malformed("bad From or To".into()));
        }
        Ok(())
    }

    /// Prints the message. Content-Length is (re)written to match the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(out, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for h in &self.headers {
            if h.name == "Content-Length" {
                continue;
            }
            let _ = write!(out, "{}: {}\r\n", h.name, h.value);
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// A response to this request, copying Via, From, To, Call-ID and CSeq (RFC 3261 8.2.6).
    /// `to_tag` is added to To when it has none.
    pub fn response(&self, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
        let mut resp = Message {
            start: StartLine::Response {
                code,
                reason: reason.into(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        };
        for h in &self.headers {
            match h.name.as_str() {
                "Via" | "From" | "Call-ID" | "CSeq" => resp.headers.push(h.clone()),
                "Record-Route" if (200..300).contains(&code) || code == 180 || code == 183 => {
                    resp.headers.push(h.clone())
                }
                "To" => {
                    let mut value = h.value.clone();
                    if let Some(tag) = to_tag
                        && code != 100
                        && NameAddr::parse(&value).is_some_and(|n| n.tag().is_none())
                    {
                        let _ = write!(value, ";tag={tag}");
                    }
                    resp.headers.push(Header {
                        name: h.name.clone(),
                        value,
                    });
                }
                _ => {}
            }
        }
        resp
    }
}

/// A Via value: `SIP/2.0/UDP host:port;branch=...;rport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    /// `sent-protocol LWS sent-by *( SEMI via-params )`; LWS is allowed around each `/` of
    /// the sent-protocol (RFC 3261 25.1, RFC 4475 3.1.1.1).
    pub fn parse(s: &str) -> Option<Via> {
        let token = |s: &str| -> Option<(String, usize)> {
            let t = s.trim_start();
            let skipped = s.len() - t.len();
            let end = t.find(|c: char| !c.is_ascii() || !is_token_char(c as u8))?;
            (end > 0).then(|| (t[..end].to_string(), skipped + end))
        };
        let slash = |s: &str| -> Option<usize> {
            let t = s.trim_start();
            t.starts_with('/').then(|| s.len() - t.len() + 1)
        };
        let mut at = 0;
        let (name, n) = token(s)?;
        at += n;
        at += slash(&s[at..])?;
        let (version, n) = token(&s[at..])?;
        at += n;
        at += slash(&s[at..])?;
        let (transport, n) = token(&s[at..])?;
        at += n;
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return None;
        }
        // LWS between the protocol and sent-by is required.
        if !s[at..].starts_with(|c: char| c.is_ascii_whitespace()) {
            return None;
        }
        let rest = s[at..].trim();
        let (hostport, params) = match rest.find(';') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(hostport)?;
        Some(Via {
            transport: transport.trim().to_ascii_uppercase(),
            host,
            port,
            params: parse_params(params),
        })
    }

    pub fn branch(&self) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("branch"))
            .and_then(|(_, v)| v.as_deref())
    }
}

/// `"Display Name" <sip:user@host>;tag=abc` or `sip:user@host;tag=abc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: String,
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    pub fn parse(s: &str) -> Option<NameAddr> {
        let s = s.trim();
        let (display, rest) = if let Some(q) = s.strip_prefix('"') {
            // Quoted display name with backslash escapes.
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => out.push(chars.next()?.1),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    _ => out.push(c),
                }
            }
            (Some(out), q[end?..].trim_start())
        } else if let Some(lt) = s.find('<') {
            let d = s[..lt].trim();
            // An unquoted display name is tokens and LWS (RFC 4475 3.1.2.15).
            if !d
                .bytes()
                .all(|c| is_token_char(c) || c == b' ' || c == b'\t')
            {
                return None;
            }
            ((!d.is_empty()).then(|| d.to_string()), &s[lt..])
        } else {
            (None, s)
        };
        let (uri, params) = if let Some(r) = rest.strip_prefix('<') {
            let end = r.find('>')?;
            let after = r[end + 1..].trim_start();
            let params = match after.strip_prefix(';') {
                Some(p) => p,
                None if after.is_empty() => "",
                None => return None,
            };
            // No LWS inside the brackets (RFC 4475 3.1.2.14).
            let uri = &r[..end];
            if uri.trim() != uri {
                return None;
            }
            (uri.to_string(), params)
        } else {
            if display.is_some() {
                return None;
            }
            // addr-spec: parameters after the URI belong to the header (RFC 3261 20.10).
            match rest.find(';') {
                Some(i) => (rest[..i].trim_end().to_string(), &rest[i + 1..]),
                None => (rest.to_string(), ""),
            }
        };
        if uri.is_empty() || !uri.contains(':') {
            return None;
        }
        Some(NameAddr {
            display,
            uri,
            params: parse_params(params),
        })
    }

    pub fn tag(&self) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("tag"))
            .and_then(|(_, v)| v.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
v: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds, SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bKa\r\n\
Max-Forwards: 70\r\n\
t: Bob <sip:bob@biloxi.example.com>\r\n\
f: \"Alice \\\"A\\\", Jr\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
m: <sip:alice@[2001:db8::1]:5070;transport=tcp>\r\n\
Subject: I know you're there,\r\n \tpull up the receiver\r\n\
c: application/sdp\r\n\
l: 4\r\n\
\r\n\
v=0\r\n";

    #[test]
    fn parses_compact_folded_multi_via_quoted_ipv6() {
        let (m, used) = parse(INVITE.as_bytes(), Framing::Datagram).unwrap();
        assert_eq!(used, INVITE.len());
        assert_eq!(m.method(), Some("INVITE"));
        let vias: Vec<_> = m.headers_named("Via").collect();
        assert_eq!(vias.len(), 2);
        let v2 = Via::parse(vias[1]).unwrap();
        assert_eq!(
            (v2.transport.as_str(), v2.host.as_str(), v2.port),
            ("TCP", "2001:db8::9", Some(5061))
        );
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(m.call_id(), Some("a84b4c76e66710@pc33.atlanta.example.com"));
        assert_eq!(m.cseq(), Some((314159, "INVITE")));
        let from = m.from().unwrap();
        assert_eq!(from.display.as_deref(), Some("Alice \"A\", Jr"));
        assert_eq!(from.tag(), Some("1928301774"));
        assert_eq!(m.to().unwrap().tag(), None);
        assert_eq!(
            m.header("Subject"),
            Some("I know you're there, pull up the receiver")
        );
        let contact = NameAddr::parse(m.header("Contact").unwrap()).unwrap();
        let uri = Uri::parse(&contact.uri).unwrap();
        assert_eq!(uri.host, "2001:db8::1");
        assert_eq!(uri.port, Some(5070));
        assert_eq!(uri.param("transport"), Some(Some("tcp")));
        assert_eq!(m.body, b"v=0\r");
        m.check_request().unwrap();
    }

    #[test]
    fn prints_byte_for_byte() {
        let (m, _) = parse(INVITE.as_bytes(), Framing::Datagram).unwrap();
        let printed = String::from_utf8(m.to_bytes()).unwrap();
        let expected = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Via: SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bKa\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: \"Alice \\\"A\\\", Jr\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@[2001:db8::1]:5070;transport=tcp>\r\n\
Subject: I know you're there, pull up the receiver\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\r";
        assert_eq!(printed, expected);
        // Printing is a fixed point.
        let (again, _) = parse(printed.as_bytes(), Framing::Datagram).unwrap();
        assert_eq!(again, m);
        assert_eq!(again.to_bytes(), printed.as_bytes());
    }

    #[test]
    fn response_copies_headers_and_adds_tag() {
        let (m, _) = parse(INVITE.as_bytes(), Framing::Datagram).unwrap();
        let r = m.response(180, "Ringing", Some("xyz"));
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert_eq!(
            text,
            "SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Via: SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bKa\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=xyz\r\n\
From: \"Alice \\\"A\\\", Jr\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn content_length_rules() {
        let base = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n";
        // Too large for the datagram.
        let bad = format!("{base}Content-Length: 10\r\n\r\nabc");
        assert!(matches!(
            parse(bad.as_bytes(), Framing::Datagram),
            Err(SipError::Malformed(m)) if m.contains("Content-Length 10")
        ));
        // Stream: wait for more.
        assert!(matches!(
            parse(bad.as_bytes(), Framing::Stream),
            Err(SipError::Incomplete)
        ));
        // Not a number.
        let nan = format!("{base}Content-Length: x\r\n\r\n");
        assert!(parse(nan.as_bytes(), Framing::Datagram).is_err());
        // Stream: two messages back to back, the first consumed exactly.
        let one = format!("{base}Content-Length: 3\r\n\r\nabc");
        let two = format!("\r\n\r\n{one}{one}");
        let (m, used) = parse(two.as_bytes(), Framing::Stream).unwrap();
        assert_eq!(m.body, b"abc");
        assert_eq!(used, 4 + one.len());
        // Stream without Content-Length is an error.
        let none = format!("{base}\r\n");
        assert!(parse(none.as_bytes(), Framing::Stream).is_err());
        // Datagram: extra bytes beyond Content-Length are dropped.
        let extra = format!("{base}Content-Length: 1\r\n\r\nabc");
        assert_eq!(
            parse(extra.as_bytes(), Framing::Datagram).unwrap().0.body,
            b"a"
        );
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let huge = format!(
            "OPTIONS sip:a@b SIP/2.0\r\nX-Big: {}\r\n\r\n",
            "a".repeat(100 * 1024)
        );
        assert!(matches!(
            parse(huge.as_bytes(), Framing::Datagram),
            Err(SipError::TooLarge(_))
        ));
        for garbage in [
            &b"\xff\xfe\r\n\r\n"[..],
            b"hello\r\n\r\n",
            b"INVITE sip:a@b SIP/3.0\r\n\r\n",
            b"SIP/2.0 99 x\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\n folded first\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nNoColon\r\n\r\n",
            b"",
        ] {
            assert!(parse(garbage, Framing::Datagram).is_err(), "{garbage:?}");
        }
        let missing = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let (m, _) = parse(missing.as_bytes(), Framing::Datagram).unwrap();
        assert!(matches!(m.check_request(), Err(SipError::Malformed(e)) if e == "missing Call-ID"));
    }

    #[test]
    fn uris_and_host_ports() {
        assert_eq!(
            split_host_port("[::1]:5060"),
            Some(("::1".into(), Some(5060)))
        );
        assert_eq!(split_host_port("[::1]"), Some(("::1".into(), None)));
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(split_host_port("h:99999"), None);
        let u = Uri::parse("sips:+1555@example.com;user=phone?x=y").unwrap();
        assert_eq!(u.scheme, "sips");
        assert_eq!(u.user.as_deref(), Some("+1555"));
        assert_eq!(u.param("user"), Some(Some("phone")));
        let n = NameAddr::parse("sip:a@b;tag=7").unwrap();
        assert_eq!((n.uri.as_str(), n.tag()), ("sip:a@b", Some("7")));
        assert!(NameAddr::parse("\"unterminated <sip:a@b>").is_none());
    }
}
