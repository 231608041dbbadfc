//! The outbound-HTTP allow-list's host patterns: parsed where an app's list
//! is stored (the control plane refuses a bad one) and matched where a
//! script's request leaves (the executor), with this one parser and matcher.

use std::fmt;
use std::net::IpAddr;

/// A pattern of the outbound-HTTP allow-list, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpAllowPattern {
    /// The host (lower-case) or, for a wildcard, the domain after `*.`.
    host: String,
    /// Whether this is `*.host`: any subdomain of `host`, not `host` itself.
    wildcard: bool,
    /// The one port allowed; `None` allows the default ports 80 and 443.
    port: Option<u16>,
}

impl HttpAllowPattern {
    /// Parses and normalises (lower-cases) a pattern: a DNS name, an IPv4
    /// address or a bracketed IPv6 address, optionally `:port`, optionally
    /// with a leading `*.` on a DNS name of at least two labels.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("`{}` is not a host pattern: {why}", text.escape_debug());
        let lower = text.trim().to_ascii_lowercase();
        if lower.is_empty() || lower.len() > 260 {
            return Err(invalid("it must be 1 to 260 characters"));
        }
        let (host, port) = if let Some(rest) = lower.strip_prefix('[') {
            let (address, after) = rest
                .split_once(']')
                .ok_or_else(|| invalid("an IPv6 address needs a closing `]`"))?;
            address
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| invalid("not an IPv6 address"))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| invalid("only `:port` may follow `]`"))?,
                ),
            };
            (format!("[{address}]"), port)
        } else {
            match lower.split_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (lower.clone(), None),
            }
        };
        let port = match port {
            None => None,
            Some(port) => match port.parse::<u16>() {
                Ok(number) if number != 0 && port.bytes().all(|byte| byte.is_ascii_digit()) => {
                    Some(number)
                }
                _ => return Err(invalid("the port must be a number from 1 to 65535")),
            },
        };
        if host.starts_with('[') {
            return Ok(HttpAllowPattern {
                host,
                wildcard: false,
                port,
            });
        }
        let (wildcard, name) = match host.strip_prefix("*.") {
            Some(name) => (true, name),
            None => (false, host.as_str()),
        };
        if name.contains('*') {
            return Err(invalid("a wildcard is only allowed as a leading `*.`"));
        }
        if name.parse::<std::net::Ipv4Addr>().is_ok() {
            if wildcard {
                return Err(invalid("an IP address cannot have a wildcard"));
            }
        } else {
            let labels: Vec<&str> = name.split('.').collect();
            let labels_are_right = name.len() <= 253
                && labels.iter().all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
                });
            if !labels_are_right {
                return Err(invalid(
                    "a host name is dot-separated labels of a-z, 0-9 and '-' (use punycode for others)",
                ));
            }
            if labels
                .last()
                .is_some_and(|label| label.bytes().all(|byte| byte.is_ascii_digit()))
            {
                return Err(invalid("not a valid IPv4 address or host name"));
            }
            if wildcard && labels.len() < 2 {
                return Err(invalid("a wildcard needs a domain of at least two labels"));
            }
        }
        Ok(HttpAllowPattern {
            host: name.to_owned(),
            wildcard,
            port,
        })
    }

    /// Whether a request to `host` (as in the URL: any case, a trailing
    /// dot, an IPv6 address with or without brackets) on `port` is allowed by
    /// this pattern. Addresses compare as addresses, so `::ffff:127.0.0.1`
    /// is `127.0.0.1`.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let port_is_allowed = match self.port {
            Some(allowed) => allowed == port,
            None => port == 80 || port == 443,
        };
        if !port_is_allowed {
            return false;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if self.wildcard {
            return host
                .strip_suffix(&self.host)
                .is_some_and(|label_part| label_part.len() > 1 && label_part.ends_with('.'));
        }
        match (ip_literal(&self.host), ip_literal(&host)) {
            (Some(allowed), Some(address)) => allowed.to_canonical() == address.to_canonical(),
            _ => host == self.host,
        }
    }
}

/// `host` as an IP address: IPv4, or IPv6 with or without brackets.
fn ip_literal(host: &str) -> Option<IpAddr> {
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(host);
    unbracketed.parse().ok()
}

impl fmt::Display for HttpAllowPattern {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            formatter.write_str("*.")?;
        }
        formatter.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(formatter, ":{port}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_are_checked_and_normalised() {
        for (text, normal) in [
            ("API.Example.com", "api.example.com"),
            ("*.example.com", "*.example.com"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("[::1]:9000", "[::1]:9000"),
            ("localhost", "localhost"),
        ] {
            assert_eq!(HttpAllowPattern::parse(text).unwrap().to_string(), normal);
        }
        for bad in [
            "",
            "*",
            "*.com",
            "a.*.com",
            "ex ample.com",
            "http://x.com",
            "x.com:0",
            "x.com:99999",
            "x.com/path",
            "-x.com",
            "*.10.0.0.1",
            "[::1",
            "999.1.1.1",
            "x.com:+80",
        ] {
            assert!(
                HttpAllowPattern::parse(bad).is_err(),
                "{bad} should be refused"
            );
        }
        let wildcard = HttpAllowPattern::parse("*.example.com").unwrap();
        assert!(wildcard.matches("api.example.com", 443));
        assert!(wildcard.matches("a.b.example.com", 80));
        assert!(!wildcard.matches("example.com", 443));
        assert!(!wildcard.matches("badexample.com", 443));
        assert!(!wildcard.matches("api.example.com", 8080));
        let with_port = HttpAllowPattern::parse("127.0.0.1:8080").unwrap();
        assert!(with_port.matches("127.0.0.1", 8080));
        assert!(!with_port.matches("127.0.0.1", 443));
    }

    #[test]
    fn addresses_compare_as_addresses() {
        let v6 = HttpAllowPattern::parse("[::1]:9000").unwrap();
        assert!(v6.matches("::1", 9000));
        assert!(v6.matches("[::1]", 9000));
        assert!(v6.matches("[0:0::1]", 9000));
        assert!(!v6.matches("::2", 9000));
        let v4 = HttpAllowPattern::parse("127.0.0.1:8080").unwrap();
        assert!(v4.matches("::ffff:127.0.0.1", 8080));
        assert!(!v4.matches("127.0.0.2", 8080));
        let name = HttpAllowPattern::parse("API.example.com").unwrap();
        assert!(name.matches("api.EXAMPLE.com.", 443));
        assert!(!name.matches("evilapi.example.com", 443));
        let wildcard = HttpAllowPattern::parse("*.hooks.example.org").unwrap();
        assert!(!wildcard.matches("evilhooks.example.org", 443));
        assert!(wildcard.matches("a.b.hooks.example.org", 443));
    }
}
