//! Network values the config holds typed and every layer uses: address ranges (`Cidr`) and SIP
//! URIs (`Uri`, and `SipUri` for a configured one). Parsed once, where the config is read, so a
//! bad value is a config error naming its key and no later layer re-parses a string.

use std::net::IpAddr;

/// One allowed range: an address and how many leading bits must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`, `::1`. None when malformed.
    pub fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (ip, bits) = match s.split_once('/') {
            Some((ip, bits)) => (ip.parse::<IpAddr>().ok()?, Some(bits.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Cidr { addr: ip, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer may show up as an IPv4-mapped IPv6 address on a dual-stack socket.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        Cidr::parse(s).ok_or_else(|| {
            format!("expected an IP address or CIDR range such as \"10.0.0.0/8\", got {s:?}")
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.bits == max {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.bits)
        }
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Cidr {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Cidr".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "description": "an IP address or CIDR range"})
    }
}

/// A SIP URI, enough to route: `sip:user@host:port;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub scheme: String,
    pub user: Option<String>,
    /// Host without brackets (an IPv6 address is stored bare).
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
}

impl Uri {
    pub fn parse(s: &str) -> Option<Uri> {
        let (scheme, rest) = s.split_once(':')?;
        if !scheme.eq_ignore_ascii_case("sip")
            && !scheme.eq_ignore_ascii_case("sips")
            && !scheme.eq_ignore_ascii_case("tel")
        {
            return None;
        }
        let rest = rest.split_once('?').map(|(a, _)| a).unwrap_or(rest);
        let (user, hostpart) = match rest.rfind('@') {
            Some(at) => (Some(rest[..at].to_string()), &rest[at + 1..]),
            None => (None, rest),
        };
        let (hostport, params) = match hostpart.find(';') {
            Some(i) => (&hostpart[..i], &hostpart[i + 1..]),
            None => (hostpart, ""),
        };
        let (host, port) = split_host_port(hostport)?;
        Some(Uri {
            scheme: scheme.to_ascii_lowercase(),
            user,
            host,
            port,
            params: parse_params(params),
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`. The host comes back without brackets.
pub fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        host.parse::<std::net::Ipv6Addr>().ok()?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse().ok()?)),
        None => (s, None),
    };
    if host.is_empty() || host.contains(':') {
        return None;
    }
    Some((host.to_string(), port))
}

/// Brackets an IPv6 host for printing.
pub fn host_for_print(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

pub(crate) fn parse_params(s: &str) -> Vec<(String, Option<String>)> {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
            None => (p.to_string(), None),
        })
        .collect()
}

/// A configured SIP URI without user part (a registrar: `sip:pbx.example:5060`), or none (the
/// empty string). Kept with its text for printing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SipUri(Option<(String, Uri)>);

impl SipUri {
    pub fn uri(&self) -> Option<&Uri> {
        self.0.as_ref().map(|(_, u)| u)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub fn as_str(&self) -> &str {
        self.0.as_ref().map_or("", |(t, _)| t.as_str())
    }
}

impl std::str::FromStr for SipUri {
    type Err = String;

    fn from_str(s: &str) -> Result<SipUri, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(SipUri(None));
        }
        match Uri::parse(s) {
            Some(u) if u.scheme == "sip" && u.user.is_none() => {
                Ok(SipUri(Some((s.to_string(), u))))
            }
            _ => Err(format!(
                "expected a SIP URI without user such as \"sip:pbx.example:5060\", got {s:?}"
            )),
        }
    }
}

impl std::fmt::Display for SipUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for SipUri {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for SipUri {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SipUri, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for SipUri {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SipUri".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "description": "a SIP URI, or empty for none"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_parse_once_and_print_back() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.1.0.0/16");
        assert_eq!(
            "192.0.2.7".parse::<Cidr>().unwrap().to_string(),
            "192.0.2.7"
        );
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        let r: SipUri = "sip:pbx.example:5070".parse().unwrap();
        assert_eq!(r.uri().unwrap().port, Some(5070));
        assert_eq!(r.as_str(), "sip:pbx.example:5070");
        assert!("".parse::<SipUri>().unwrap().is_empty());
        assert!("sip:alice@pbx.example".parse::<SipUri>().is_err());
        assert!("http://x".parse::<SipUri>().is_err());
    }
}
