//! Host name patterns used by `rewrite.direct_hosts` and `upstream.allowed_hosts`.

/// An exact host (`static.1sapp.com`) or a subdomain glob (`*.1sapp.com`, which matches
/// `a.1sapp.com` and `a.b.1sapp.com` but not `1sapp.com` itself). Compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    Exact(String),
    Suffix(String),
}

impl HostPattern {
    pub(crate) fn parse(pattern: &str) -> Result<HostPattern, String> {
        let p = pattern.trim().to_ascii_lowercase();
        let valid = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        };
        if let Some(rest) = p.strip_prefix("*.") {
            if valid(rest) {
                return Ok(HostPattern::Suffix(format!(".{rest}")));
            }
        } else if valid(&p) {
            return Ok(HostPattern::Exact(p));
        }
        Err(format!(
            "{pattern:?} is not a host name or a \"*.domain\" glob"
        ))
    }

    pub(crate) fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        match self {
            HostPattern::Exact(h) => host.eq_ignore_ascii_case(h),
            HostPattern::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host.is_char_boundary(host.len() - suffix.len())
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

/// A list of patterns. Built only from patterns that all parse: an allow-list that silently
/// lost a bad entry could end up empty, and an empty allow-list allows every host.
#[derive(Debug, Clone, Default)]
pub struct HostSet(Vec<HostPattern>);

/// The first pattern of a list that does not parse: its index and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPattern {
    pub index: usize,
    pub reason: String,
}

impl HostSet {
    pub fn new(patterns: &[String]) -> Result<HostSet, BadPattern> {
        patterns
            .iter()
            .enumerate()
            .map(|(index, p)| {
                HostPattern::parse(p).map_err(|reason| BadPattern {
                    index,
                    reason: reason.to_string(),
                })
            })
            .collect::<Result<_, _>>()
            .map(HostSet)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, host: &str) -> bool {
        self.0.iter().any(|p| p.matches(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_subdomains_only() {
        let p = HostPattern::parse("*.1sapp.com").unwrap();
        assert!(p.matches("static.1sapp.com"));
        assert!(p.matches("A.B.1SAPP.com"));
        assert!(!p.matches("1sapp.com"));
        assert!(!p.matches("evil1sapp.com"));
        let e = HostPattern::parse("Static.1sapp.com").unwrap();
        assert!(e.matches("static.1sapp.com."));
        assert!(!e.matches("static.1sapp.com.evil.example"));
        assert!(HostPattern::parse("a b").is_err());
        assert!(HostPattern::parse("*").is_err());
    }

    #[test]
    fn a_bad_pattern_fails_the_whole_set() {
        let list = ["*.1sapp.com".to_string(), "a b".to_string()];
        assert_eq!(HostSet::new(&list).unwrap_err().index, 1);
        assert!(HostSet::new(&list[..1]).unwrap().matches("x.1sapp.com"));
    }
}
