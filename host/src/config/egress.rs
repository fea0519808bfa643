//! `[egress]`: what the agent may reach on the network besides its upstreams, checked (the
//! rules). The worker's side of governed-only (the socket pair, the broker that connects for
//! the agent) is `agent::egress`, which documents the modes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::llm::upstreams::Upstreams;

/// `[egress] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EgressMode {
    #[default]
    Open,
    GovernedOnly,
}

/// `[egress]` in `ironhost.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EgressFileConfig {
    pub mode: Option<EgressMode>,
    /// Hosts the agent may connect to besides its upstreams (governed-only): `host`,
    /// `host:port`, `*.domain` (its subdomains), an IPv4 or `[IPv6]` address.
    #[serde(default)]
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`: any subdomain of `example.com` (not the domain itself).
    Subdomains(String),
}

/// One `allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    host: HostPattern,
    port: Option<u16>,
    text: String,
}

impl Rule {
    fn parse(text: &str) -> Result<Rule, String> {
        let t = text.trim();
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (ip, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{text}`: `[` without `]`"))?;
            (ip.to_owned(), after.strip_prefix(':'))
        } else if t.matches(':').count() > 1 {
            (t.to_owned(), None) // a bare IPv6 address
        } else {
            match t.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (t.to_owned(), None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("`{text}`: `{p}` is not a port"))?,
            ),
        };
        let host = host.to_ascii_lowercase();
        let valid = |h: &str| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
        };
        let pattern = match host.strip_prefix("*.") {
            Some(domain) if valid(domain) && domain.contains('.') => {
                HostPattern::Subdomains(domain.to_owned())
            }
            Some(_) => {
                return Err(format!(
                    "`{text}`: `*.` needs a domain such as *.example.com"
                ));
            }
            None if valid(&host) => HostPattern::Exact(host),
            None => return Err(format!("`{text}` is not a host, host:port or *.domain")),
        };
        Ok(Rule {
            host: pattern,
            port,
            text: t.to_owned(),
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        let host_ok = match &self.host {
            HostPattern::Exact(h) => h == host,
            HostPattern::Subdomains(d) => host
                .strip_suffix(d.as_str())
                .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1),
        };
        // Port 0: a name look-up without a port (the connection is checked with its own).
        host_ok && (port == 0 || self.port.is_none_or(|p| p == port))
    }
}

/// The checked `[egress]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Egress {
    pub mode: EgressMode,
    rules: Vec<Rule>,
    /// The upstreams' hosts, by name: never reachable around the chain.
    upstream_hosts: BTreeMap<String, String>,
}

/// Why a request was refused, and how the agent's side reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub error: String,
    pub kind: &'static str,
}

impl Egress {
    /// Check `[egress]` against the upstreams; an error is (key, reason).
    pub fn new(file: &EgressFileConfig, upstreams: &Upstreams) -> Result<Egress, (String, String)> {
        let mut upstream_hosts = BTreeMap::new();
        for u in upstreams.iter() {
            if let Ok(url) = reqwest::Url::parse(&u.address)
                && let Some(h) = url.host_str()
            {
                let h = h.trim_start_matches('[').trim_end_matches(']');
                upstream_hosts
                    .entry(h.to_ascii_lowercase())
                    .or_insert_with(|| u.name.clone());
            }
        }
        let mut rules = Vec::new();
        for (i, text) in file.allow.iter().enumerate() {
            let rule = Rule::parse(text).map_err(|e| (format!("egress.allow[{i}]"), e))?;
            if let HostPattern::Exact(h) = &rule.host
                && let Some(name) = upstream_hosts.get(h)
            {
                return Err((
                    format!("egress.allow[{i}]"),
                    format!(
                        "`{text}` is the host of upstream `{name}`: its requests go through the \
                         chain, never around it"
                    ),
                ));
            }
            rules.push(rule);
        }
        Ok(Egress {
            mode: file.mode.unwrap_or_default(),
            rules,
            upstream_hosts,
        })
    }

    /// Whether the agent may connect to `host:port` (host lower-cased, no brackets).
    pub fn check(&self, host: &str, port: u16) -> Result<(), Refusal> {
        if let Some(name) = self.upstream_hosts.get(host) {
            return Err(Refusal {
                error: format!(
                    "egress = \"governed-only\": {host} is upstream `{name}`; its requests go \
                     through ironhost from a governed HTTP client (httpx, requests, urllib, \
                     aiohttp, httpcore), not over a connection of the agent's own"
                ),
                kind: "refused",
            });
        }
        if self.rules.iter().any(|r| r.matches(host, port)) {
            return Ok(());
        }
        let allowed = if self.rules.is_empty() {
            "nothing is allowed".to_owned()
        } else {
            let list: Vec<&str> = self.rules.iter().map(|r| r.text.as_str()).collect();
            format!("allowed: {}", list.join(", "))
        };
        Err(Refusal {
            error: format!(
                "egress = \"governed-only\": {host}:{port} is not a configured upstream or in \
                 egress.allow ({allowed})"
            ),
            kind: "refused",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress(allow: &[&str]) -> Result<Egress, (String, String)> {
        let file = EgressFileConfig {
            mode: Some(EgressMode::GovernedOnly),
            allow: allow.iter().map(|s| (*s).to_owned()).collect(),
        };
        Egress::new(&file, &Upstreams::default())
    }

    #[test]
    fn allow_rules_match_hosts_ports_and_subdomains() {
        let e = egress(&[
            "api.serpapi.com",
            "crm.internal:8443",
            "*.example.org",
            "10.0.0.5",
            "[::1]:80",
        ])
        .expect("valid");
        assert!(e.check("api.serpapi.com", 443).is_ok());
        assert!(e.check("api.serpapi.com", 80).is_ok());
        assert!(e.check("crm.internal", 8443).is_ok());
        assert!(e.check("crm.internal", 443).is_err());
        assert!(
            e.check("crm.internal", 0).is_ok(),
            "a look-up without a port"
        );
        assert!(e.check("a.example.org", 443).is_ok());
        assert!(
            e.check("example.org", 443).is_err(),
            "*.domain is its subdomains"
        );
        assert!(e.check("badexample.org", 443).is_err());
        assert!(e.check("10.0.0.5", 22).is_ok());
        assert!(e.check("::1", 80).is_ok());
        let r = e.check("evil.example.net", 443).expect_err("refused");
        assert!(
            r.error.contains("evil.example.net:443") && r.error.contains("egress.allow"),
            "{}",
            r.error
        );
        // An upstream's host is never reached around the chain.
        let r = e.check("api.openai.com", 443).expect_err("refused");
        assert!(r.error.contains("upstream `openai`"), "{}", r.error);
    }

    #[test]
    fn bad_entries_name_the_entry_and_the_reason() {
        for (allow, reason) in [
            ("api.openai.com", "host of upstream `openai`"),
            ("host:0", "not a port"),
            ("host:http", "not a port"),
            ("*.", "needs a domain"),
            ("*.com", "needs a domain"),
            ("a b", "not a host"),
            ("[::1", "without `]`"),
        ] {
            let (key, r) = egress(&[allow]).expect_err(allow);
            assert_eq!(key, "egress.allow[0]");
            assert!(r.contains(reason), "{allow}: {r}");
        }
    }
}
