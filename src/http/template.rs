//! Path templates (`/api/v1/calls/{call_sid}/hangup`) matched exactly: the same number
//! of segments, literals equal, parameters non-empty; no trailing slash, no extra segment.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(&'static str),
    Param,
}

/// A path template (`/api/v1/calls/{call_sid}/hangup`) matched exactly: the same number of
/// segments, literals equal, parameters non-empty; no trailing slash or extra segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

impl Template {
    /// Parses a template (segments in braces are parameters).
    pub fn new(template: &'static str) -> Self {
        let segments = template
            .strip_prefix('/')
            .unwrap_or(template)
            .split('/')
            .map(|s| {
                if s.starts_with('{') && s.ends_with('}') {
                    Segment::Param
                } else {
                    Segment::Literal(s)
                }
            })
            .collect();
        Self { segments }
    }

    /// How many parameters.
    pub fn params(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Param))
            .count()
    }

    /// The parameters of `path` when it matches, in order.
    pub fn matches(&self, path: &str) -> Option<Vec<String>> {
        let rest = path.strip_prefix('/')?;
        let mut params = Vec::new();
        let mut parts = rest.split('/');
        for seg in &self.segments {
            let part = parts.next()?;
            match seg {
                Segment::Literal(lit) if *lit == part => {}
                Segment::Literal(_) => return None,
                Segment::Param if part.is_empty() => return None,
                Segment::Param => params.push(part.to_owned()),
            }
        }
        parts.next().is_none().then_some(params)
    }

    /// Whether some path matches both templates.
    pub fn overlaps(&self, other: &Template) -> bool {
        self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|pair| match pair {
                    (Segment::Literal(a), Segment::Literal(b)) => a == b,
                    _ => true,
                })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_exactly() {
        let t = Template::new("/api/v1/calls/{call_sid}/hangup");
        assert_eq!(t.params(), 1);
        assert_eq!(
            t.matches("/api/v1/calls/CA1/hangup"),
            Some(vec!["CA1".to_owned()])
        );
        for miss in [
            "/api/v1/calls//hangup",
            "/api/v1/calls/CA1/hangup/",
            "/api/v1/calls/CA1/hangup/x",
            "/api/v1/calls/CA1",
            "api/v1/calls/CA1/hangup",
            "/api/v1/calls/CA1/transfer",
            "",
            "/",
        ] {
            assert_eq!(t.matches(miss), None, "{miss}");
        }
        let root = Template::new("/metrics");
        assert_eq!(root.matches("/metrics"), Some(vec![]));
        assert_eq!(root.matches("/metrics/"), None);
        let two = Template::new("/a/{x}/b/{y}");
        assert_eq!(
            two.matches("/a/1/b/2"),
            Some(vec!["1".to_owned(), "2".to_owned()])
        );
    }

    #[test]
    fn overlapping_templates_are_detected() {
        let a = Template::new("/a/{x}");
        assert!(a.overlaps(&Template::new("/a/stream")));
        assert!(!a.overlaps(&Template::new("/a/{x}/b")));
        assert!(!Template::new("/a/b").overlaps(&Template::new("/a/c")));
    }
}
