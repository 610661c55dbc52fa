//! The one tool-visibility predicate, `ToolFilter::allows`, used for `tools/list` and `tools/call` alike.
//!
//! Globs are case-sensitive and treat `.` and `/` as ordinary characters (`github.search_*` matches
//! `github.search_code`), because MCP tool names are opaque strings, not paths.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Compiled `allowed_tools` patterns of one MCP config.
#[derive(Clone)]
pub struct ToolFilter {
    /// Patterns that are a plain name (`slack.post_message`), or a plain prefix and one final `*`
    /// (`github.*`, `*`): decided by string comparison. Most configured patterns are one of these, and
    /// globset's general matcher first splits every name like a path into base name and extension
    /// (its cost per `tools/call` is in BENCHMARKS.md, "Tool filter").
    simple: Vec<Simple>,
    /// Every other pattern, compiled together.
    set: GlobSet,
    patterns: Vec<String>,
}

/// A pattern with no glob syntax except possibly one trailing `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Simple {
    Exact(String),
    Prefix(String),
}

impl Simple {
    /// The simple form of `p`, if it has one. Any other metacharacter (`?`, `[`, `{`, `\\`, a second
    /// `*`) or a `]`/`}` that globset might read specially leaves the pattern to globset.
    fn of(p: &str) -> Option<Self> {
        let (lit, prefix) = match p.strip_suffix('*') {
            Some(l) => (l, true),
            None => (p, false),
        };
        if lit.contains(['*', '?', '[', ']', '{', '}', '\\', ',']) {
            return None;
        }
        Some(if prefix {
            Self::Prefix(lit.to_string())
        } else {
            Self::Exact(lit.to_string())
        })
    }

    fn matches(&self, tool: &str) -> bool {
        match self {
            Self::Exact(s) => tool == s,
            Self::Prefix(s) => tool.starts_with(s.as_str()),
        }
    }
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
        let mut simple = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            if p.trim().is_empty() {
                return Err((i, "pattern is empty; use \"*\" to allow every tool".into()));
            }
            let g = glob(p).map_err(|e| (i, format!("invalid glob: {}", e.kind())))?;
            match Simple::of(p) {
                Some(s) => simple.push(s),
                None => {
                    b.add(g);
                }
            }
        }
        let set = b
            .build()
            .map_err(|e| (0, format!("invalid glob set: {e}")))?;
        Ok(Self {
            simple,
            set,
            patterns: patterns.to_vec(),
        })
    }

    /// SECURITY: the single decision for whether a tool exists for this binding. Default deny: an empty
    /// pattern list allows nothing. The simple patterns' string tests decide exactly as globset would
    /// (checked against globset in the tests below). The emptiness test is ours because globset builds
    /// its path-style candidate before checking for an empty set.
    ///
    /// SECURITY: a name outside the character set the 2025-11-25 specification gives tool names (ASCII
    /// letters, digits, `_`, `-`, `.`; 1 to 128 of them) is never a tool, whatever the patterns say, in
    /// `tools/list` results and `tools/call` alike: an upstream that trims, case-folds or normalises
    /// `/`, `..`, control characters or whitespace could otherwise run a tool under a name that matched
    /// an allowed glob only as sent (`github.get_x/../delete_repo`).
    pub fn allows(&self, tool: &str) -> bool {
        valid_tool_name(tool)
            && (self.simple.iter().any(|s| s.matches(tool))
                || (!self.set.is_empty() && self.set.is_match(tool)))
    }

    /// The patterns as configured, for `mcp-config get` and docs.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

/// The 2025-11-25 tool-name rule: 1-128 of `A-Z a-z 0-9 _ - .`.
pub fn valid_tool_name(tool: &str) -> bool {
    (1..=128).contains(&tool.len())
        && tool
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// How every pattern is compiled: case-sensitive, `*` crossing `/`, backslash escapes.
fn glob(p: &str) -> Result<globset::Glob, globset::Error> {
    GlobBuilder::new(p)
        .case_insensitive(false)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
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
            (&["*"], "anything.at-all_9", true),
            // Outside the specification's tool-name set: never a tool, even under "*".
            (&["*"], "anything.at/all", false),
            (&["github.get_*"], "github.get_x/../delete_repo", false),
            (&["github.get_*"], "github.get_issue\n", false),
            (&["github.get_*"], "github.get_issue ", false),
            (&["github.get_*"], "github.get_\u{0}issue", false),
            (&["github.get_*"], "github.get_\u{e9}", false),
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

    /// SECURITY: the string fast path and globset agree on every pattern it takes, for names built from
    /// the characters that matter (separators, dots, case, glob syntax, multi-byte text).
    #[test]
    fn simple_patterns_decide_exactly_as_globset() {
        let patterns = [
            "*",
            "github.*",
            "github.get_*",
            "github.get_issue",
            "a/b*",
            "a.b",
            "",
            "x",
            "é*",
            "Git*",
            "github.",
            "github.get_issue*",
        ];
        let alphabet = [
            "", "github", ".", "get_", "issue", "/", "a", "b", "é", "G", "*", "x",
        ];
        let mut names = vec![String::new()];
        for _ in 0..3 {
            let mut next = Vec::new();
            for n in &names {
                for a in alphabet {
                    next.push(format!("{n}{a}"));
                }
            }
            names = next;
        }
        for p in patterns.iter().filter(|p| !p.is_empty()) {
            let simple = Simple::of(p).unwrap_or_else(|| panic!("{p} is simple"));
            let g = glob(p).unwrap().compile_matcher();
            for n in &names {
                assert_eq!(simple.matches(n), g.is_match(n), "pattern {p:?} name {n:?}");
            }
        }
        for p in [
            "a?c", "a[bc]", "{a,b}", "a\\*", "**", "a*b", "*a*", "a]b*", "a,b",
        ] {
            assert_eq!(Simple::of(p), None, "{p} goes to globset");
        }
    }

    #[test]
    fn mixed_simple_and_glob_patterns() {
        let m = f(&["github.get_*", "slack.?ost_message"]);
        assert!(m.allows("github.get_issue"));
        assert!(m.allows("slack.post_message"));
        assert!(!m.allows("slack.post_messages"));
        assert!(!m.allows("github.create_issue"));
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
