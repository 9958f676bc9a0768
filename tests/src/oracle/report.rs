//! Renders a comparison as a readable, unified-diff-like report.
//!
//! ```text
//! scenario sched-rr: '-' golden (kernel IPVS), '+' ours, ' ' same in both (golden's text)
//! trailing spaces are shown as '·', tabs as '→', carriage returns as '␍'
//! rules: header-size, conn-expiry-1s, conn-order, rate-values
//!
//! == sched-rr: command at golden line 6, ours line 6: $ ipvsadm -L -n
//! @@ golden line 8, ours line 8 @@
//!  Prot LocalAddress:Port Scheduler Flags
//!    -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
//!  TCP  203.0.113.10:80 rr
//! -  -> 192.0.2.13:80                Masq    1      0          1·········
//! +  -> 192.0.2.13:80                Masq    1      0          0·········
//!  [exit 0]
//!
//! sched-rr: 7 items compared, 1 differ (1 changed, 0 missing from ours, 0 extra in ours)
//! ```

use super::diff::{Comparison, DiffLine, Mismatch, MismatchKind};
use super::transcript::{Item, Located};
use std::fmt::{self, Write as _};

/// Unchanged lines shown around each change.
const CONTEXT: usize = 3;

/// The text with whitespace that a terminal would hide made visible: trailing spaces (which
/// ipvsadm's padded columns produce) as `·`, tabs as `→`, carriage returns as `␍`, other
/// control characters as `\xNN`.
pub fn visible(text: &str) -> String {
    let body = text.trim_end_matches(' ');
    let mut out = String::with_capacity(text.len() + 8);
    for c in body.chars() {
        match c {
            '\t' => out.push('→'),
            '\r' => out.push('␍'),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.extend(std::iter::repeat_n('·', text.len() - body.len()));
    out
}

fn kind_name(item: &Item) -> &'static str {
    match item {
        Item::Heading(_) => "heading",
        Item::Record(_) => "record",
        Item::Command(_) => "command",
    }
}

fn command_suffix(item: &Item) -> String {
    match item {
        Item::Command(c) => format!(": $ {}", c.line),
        _ => String::new(),
    }
}

fn title(scenario: &str, m: &Mismatch) -> String {
    let line = |l: &Option<Located>| l.as_ref().map_or(0, |l| l.line);
    let item = &m.golden.as_ref().or(m.ours.as_ref()).expect("a mismatch has a side").item;
    let (kind, cmd) = (kind_name(item), command_suffix(item));
    match m.kind() {
        MismatchKind::Changed => {
            format!(
                "== {scenario}: {kind} at golden line {}, ours line {}{cmd}",
                line(&m.golden),
                line(&m.ours)
            )
        }
        MismatchKind::MissingFromOurs => {
            format!("== {scenario}: {kind} missing from ours, golden line {}{cmd}", line(&m.golden))
        }
        MismatchKind::ExtraInOurs => {
            format!("== {scenario}: extra {kind} in ours, ours line {}{cmd}", line(&m.ours))
        }
    }
}

/// Index ranges of the lines to show: every change with CONTEXT lines around it, overlapping
/// ranges merged.
fn hunks(lines: &[DiffLine]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, _) in lines.iter().enumerate().filter(|(_, l)| l.is_change()) {
        let (start, end) = (i.saturating_sub(CONTEXT), (i + CONTEXT + 1).min(lines.len()));
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => out.push((start, end)),
        }
    }
    out
}

/// `@@ golden line X, ours line Y @@` for a hunk that does not start at the item's first line.
fn hunk_header(lines: &[DiffLine]) -> String {
    let golden = lines.iter().find_map(|l| match l {
        DiffLine::Same { golden, .. } => Some(*golden),
        DiffLine::Golden { line, .. } => Some(*line),
        DiffLine::Ours { .. } => None,
    });
    let ours = lines.iter().find_map(|l| match l {
        DiffLine::Same { ours, .. } => Some(*ours),
        DiffLine::Ours { line, .. } => Some(*line),
        DiffLine::Golden { .. } => None,
    });
    let sides: Vec<String> = [("golden", golden), ("ours", ours)]
        .into_iter()
        .filter_map(|(name, n)| n.map(|n| format!("{name} line {n}")))
        .collect();
    format!("@@ {} @@", sides.join(", "))
}

fn write_mismatch(f: &mut fmt::Formatter<'_>, scenario: &str, m: &Mismatch) -> fmt::Result {
    let note = if m.reordered { "  [our connection entries in golden's order]" } else { "" };
    writeln!(f, "{}{note}", title(scenario, m))?;
    for (start, end) in hunks(&m.lines) {
        if start > 0 {
            writeln!(f, "{}", hunk_header(&m.lines[start..end]))?;
        }
        for l in &m.lines[start..end] {
            let (mark, text) = match l {
                DiffLine::Same { text, .. } => (' ', text),
                DiffLine::Golden { text, .. } => ('-', text),
                DiffLine::Ours { text, .. } => ('+', text),
            };
            writeln!(f, "{mark}{}", visible(text))?;
        }
    }
    writeln!(f)
}

impl Comparison {
    /// The full report: the differing items, then the one-line summary.
    pub fn report(&self) -> String {
        self.to_string()
    }

    /// `sched-rr: 42 items compared, 1 differ (...); allowed lines: header-size 6`
    pub fn summary(&self) -> String {
        let count = |k: MismatchKind| self.mismatches.iter().filter(|m| m.kind() == k).count();
        let mut s =
            format!("{}: {} items compared, {} differ", self.scenario, self.items, self.mismatches.len());
        if !self.matches() {
            let _ = write!(
                s,
                " ({} changed, {} missing from ours, {} extra in ours)",
                count(MismatchKind::Changed),
                count(MismatchKind::MissingFromOurs),
                count(MismatchKind::ExtraInOurs)
            );
        }
        if !self.allowed.is_empty() {
            let used: Vec<String> = self.allowed.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let _ = write!(s, "; allowed lines: {}", used.join(", "));
        }
        s
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.matches() {
            writeln!(
                f,
                "scenario {}: '-' golden (kernel IPVS), '+' ours, ' ' same in both (golden's text)",
                self.scenario
            )?;
            writeln!(f, "trailing spaces are shown as '·', tabs as '→', carriage returns as '␍'")?;
            let rules: Vec<&str> = self.rules.iter().map(|r| r.name()).collect();
            let rules =
                if rules.is_empty() { "none (exact comparison)".to_string() } else { rules.join(", ") };
            writeln!(f, "rules: {rules}")?;
            writeln!(f)?;
            for m in &self.mismatches {
                write_mismatch(f, &self.scenario, m)?;
            }
        }
        writeln!(f, "{}", self.summary())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{compare, AllowList};
    use super::*;

    #[test]
    fn visible_marks_hidden_whitespace() {
        assert_eq!(visible("a b  "), "a b··");
        assert_eq!(visible("a\tb\r"), "a→b␍");
        assert_eq!(visible("   "), "···");
        assert_eq!(visible("x\u{1b}"), "x\\x1b");
    }

    fn block(rows: &[&str]) -> String {
        let mut s = "$ ipvsadm -L -n\n".to_string();
        for r in rows {
            s.push_str(r);
            s.push('\n');
        }
        s.push_str("[exit 0]\n");
        s
    }

    #[test]
    fn report_shows_changed_lines_with_context_and_positions() {
        let rows: Vec<String> = (0..20).map(|i| format!("row {i} ")).collect();
        let golden_rows: Vec<&str> = rows.iter().map(String::as_str).collect();
        let mut ours_rows = golden_rows.clone();
        ours_rows[10] = "row 10";
        let golden = format!("### t\n{}", block(&golden_rows));
        let ours = format!("### t\n{}", block(&ours_rows));
        let c = compare("demo", &golden, &ours, &AllowList::default());
        let report = c.report();
        let expected = "\
== demo: command at golden line 2, ours line 2: $ ipvsadm -L -n
@@ golden line 10, ours line 10 @@
 row 7·
 row 8·
 row 9·
-row 10·
+row 10
 row 11·
 row 12·
 row 13·

demo: 2 items compared, 1 differ (1 changed, 0 missing from ours, 0 extra in ours)
";
        assert!(report.ends_with(expected), "{report}");
        assert!(report.starts_with("scenario demo: '-' golden"), "{report}");
        assert!(report.contains("rules: none (exact comparison)"), "{report}");
    }

    #[test]
    fn report_lists_missing_and_extra_items() {
        let c = compare(
            "demo",
            "### a\nconn 1 -> rs1\n",
            "### a\nconn 2 -> rs2\nconn 3 -> rs3\n",
            &AllowList::default(),
        );
        let report = c.report();
        assert!(
            report
                .contains("== demo: record at golden line 2, ours line 2\n-conn 1 -> rs1\n+conn 2 -> rs2\n"),
            "{report}"
        );
        assert!(report.contains("== demo: extra record in ours, ours line 3\n+conn 3 -> rs3\n"), "{report}");
        assert!(
            report.ends_with(
                "demo: 3 items compared, 2 differ (1 changed, 0 missing from ours, 1 extra in ours)\n"
            ),
            "{report}"
        );
    }

    #[test]
    fn matching_report_is_the_summary() {
        let allow = AllowList::parse("header-size * # test\n", "test").unwrap();
        let golden = block(&["IP Virtual Server version 1.2.1 (size=4096)"]);
        let ours = block(&["IP Virtual Server version 1.2.1 (size=1048576)"]);
        let c = compare("demo", &golden, &ours, &allow);
        assert_eq!(c.report(), "demo: 1 items compared, 0 differ; allowed lines: header-size 1\n");
    }
}
