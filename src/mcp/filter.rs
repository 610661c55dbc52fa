//! The one tool-visibility predicate, `ToolFilter::allows`, used for `tools/list` and `tools/call` alike.
//!
//! Globs are case-sensitive and treat `.` and `/` as ordinary characters (`github.search_*` matches
//! `github.search_code`), because MCP tool names are opaque strings, not paths.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Compiled `allowed_tools` patterns of one MCP config.
#[derive(Clone)]
pub struct ToolFilter {
    set: GlobSet,
    patterns: Vec<String>,
}

impl std::fmt::Debug for ToolFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ToolFilter").field(&self.patterns).finish()
    }
}

impl ToolFilter {
    /// Compile patterns; on error returns the index of the bad pattern and why.
    ///
    /// # Errors
    /// An empty pattern or one globset cannot parse.
    pub fn new(patterns: &[String]) -> Result<Self, (usize, String)> {
        let mut b = GlobSetBuilder::new();
        for (i, p) in patterns.iter().enumerate() {
            if p.trim().is_empty() {
                return Err((i, "pattern is empty; use \"*\" to allow every tool".into()));
            }
            let g = GlobBuilder::new(p)
                .case_insensitive(false)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .map_err(|e| (i, format!("invalid glob: {}", e.kind())))?;
            b.add(g);
        }
        let set = b
            .build()
            .map_err(|e| (0, format!("invalid glob set: {e}")))?;
        Ok(Self {
            set,
            patterns: patterns.to_vec(),
        })
    }

    /// SECURITY: the single decision for whether a tool exists for this binding. Default deny: an empty
    /// pattern list allows nothing.
    pub fn allows(&self, tool: &str) -> bool {
        self.set.is_match(tool)
    }

    /// The patterns as configured, for `mcp-config get` and docs.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(p: &[&str]) -> ToolFilter {
        ToolFilter::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn table() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["*"], "anything.at/all", true),
            (
                &["github.search_*", "github.get_*"],
                "github.search_code",
                true,
            ),
            (
                &["github.search_*", "github.get_*"],
                "github.get_issue",
                true,
            ),
            (
                &["github.search_*", "github.get_*"],
                "github.create_issue",
                false,
            ),
            // Case-sensitive.
            (&["github.search_*"], "GitHub.search_code", false),
            (&["github.search_*"], "github.SEARCH_code", false),
            // Dots are literal, not wildcards.
            (&["github.get_issue"], "githubXget_issue", false),
            (&["slack.post_message"], "slack.post_message", true),
            (&["slack.post_message"], "slack.post_message2", false),
            // Default deny.
            (&[], "echo", false),
            (&["?cho"], "echo", true),
            (&["ec[hk]o"], "ecko", true),
        ];
        for (pats, tool, want) in cases {
            assert_eq!(f(pats).allows(tool), *want, "{pats:?} vs {tool}");
        }
    }

    #[test]
    fn bad_patterns_are_named() {
        let e = ToolFilter::new(&["ok".into(), "bad[".into()]).unwrap_err();
        assert_eq!(e.0, 1);
        assert!(e.1.contains("invalid glob"), "{}", e.1);
        let e = ToolFilter::new(&["".into()]).unwrap_err();
        assert!(e.1.contains("empty"));
    }
}
