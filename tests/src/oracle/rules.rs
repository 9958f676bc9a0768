//! The intended differences between kernel IPVS and ours, and the allow-list file that enables
//! them per scenario. Everything a rule tolerates is decided here, so this file is the whole
//! answer to "what does the oracle not compare exactly".
//!
//! Allow-list format, one rule per line (blank lines and `#` lines ignored):
//!
//! ```text
//! header-size * # our size= is the connection-table capacity, the kernel's is its hash-table size
//! conn-order sched-rr # ...
//! ```
//!
//! The scope is `*` (every scenario) or a scenario name (the transcript's file stem); the
//! reason after `#` is required, so every exception stays explained where it is granted.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::transcript::{BodyLine, Command, Part};

/// An intended difference. Each one only loosens the comparison of stdout lines of command
/// blocks, never headings, records, stderr or exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    HeaderSize,
    ConnExpiry1s,
    ConnOrder,
    RateValues,
    KernelWithoutTwos,
}

impl Rule {
    pub const ALL: [Rule; 5] =
        [Rule::HeaderSize, Rule::ConnExpiry1s, Rule::ConnOrder, Rule::RateValues, Rule::KernelWithoutTwos];

    /// The name used in the allow-list file and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Rule::HeaderSize => "header-size",
            Rule::ConnExpiry1s => "conn-expiry-1s",
            Rule::ConnOrder => "conn-order",
            Rule::RateValues => "rate-values",
            Rule::KernelWithoutTwos => "kernel-without-twos",
        }
    }

    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == name)
    }

    /// What the rule lets differ, and what must still match.
    pub fn allows(self) -> &'static str {
        match self {
            Rule::HeaderSize => {
                "the N of `IP Virtual Server version V (size=N)`; V and the rest of the line must match"
            }
            Rule::ConnExpiry1s => {
                "in `-L -c` listings, an entry's MM:SS expiry by up to one second; every other byte \
                 must match"
            }
            Rule::ConnOrder => {
                "in `-L -c` listings, the order of the entries; each entry must still have exactly one \
                 counterpart"
            }
            Rule::RateValues => {
                "in `--rate`/`--stats` listings, the five counter values; the service or server, the number \
                 of counters and where each column ends must match"
            }
            Rule::KernelWithoutTwos => {
                "a command selecting the twos scheduler (`-s twos`) that the kernel refused with exactly \
                 `Scheduler or persistence engine not found` and exit 255 may succeed in ours with no \
                 output and exit 0; in `-L` listings, our service lines with scheduler twos and the \
                 real-server lines under them may be extra. Every other line must match"
            }
        }
    }

    /// Why the difference is intended rather than a bug.
    pub fn reason(self) -> &'static str {
        match self {
            Rule::HeaderSize => {
                "our size= is the connection-table capacity, the kernel's is its hash-table size"
            }
            Rule::ConnExpiry1s => "timers sampled a moment apart",
            Rule::ConnOrder => "kernel lists connections in hash-bucket order with a random seed",
            Rule::RateValues => "rates and counters depend on timing",
            Rule::KernelWithoutTwos => {
                "the oracle's kernel (6.1) predates twos: its image has every ip_vs scheduler module but \
                 ip_vs_twos"
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The rules enabled for one scenario.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleSet(u8);

impl RuleSet {
    pub fn of(rules: &[Rule]) -> RuleSet {
        RuleSet(rules.iter().fold(0, |bits, r| bits | RuleSet::bit(*r)))
    }

    fn bit(rule: Rule) -> u8 {
        1 << (rule as u8)
    }

    pub fn has(self, rule: Rule) -> bool {
        self.0 & RuleSet::bit(rule) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Rule> {
        Rule::ALL.into_iter().filter(move |r| self.has(*r))
    }
}

/// One granted exception from the allow-list file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub rule: Rule,
    /// `None` for `*`.
    pub scenario: Option<String>,
    pub reason: String,
    pub line: usize,
}

/// The parsed allow-list file. The empty list (the `Default`) compares everything exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    pub grants: Vec<Grant>,
}

impl AllowList {
    pub fn load(path: impl AsRef<Path>) -> Result<AllowList> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        AllowList::parse(&text, &path.display().to_string())
    }

    /// Parses the file's text; `path` only names the file in errors (`path:line: ...`).
    pub fn parse(text: &str, path: &str) -> Result<AllowList> {
        let mut grants = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (spec, reason) = match trimmed.split_once('#') {
                Some((spec, reason)) => (spec, reason.trim()),
                None => (trimmed, ""),
            };
            let words: Vec<&str> = spec.split_whitespace().collect();
            let [name, scope] = words[..] else {
                bail!("{path}:{line}: expected `<rule> <scope> # <reason>`, found `{trimmed}`");
            };
            let Some(rule) = Rule::from_name(name) else {
                let known: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
                bail!("{path}:{line}: unknown rule `{name}` (known: {})", known.join(", "));
            };
            if reason.is_empty() {
                bail!("{path}:{line}: rule `{name}` needs a reason after `#`");
            }
            let scenario = (scope != "*").then(|| scope.to_string());
            grants.push(Grant { rule, scenario, reason: reason.to_string(), line });
        }
        Ok(AllowList { grants })
    }

    /// The rules granted to `scenario` (by name or by `*`).
    pub fn rules_for(&self, scenario: &str) -> RuleSet {
        let rules: Vec<Rule> = self
            .grants
            .iter()
            .filter(|g| g.scenario.as_deref().is_none_or(|s| s == scenario))
            .map(|g| g.rule)
            .collect();
        RuleSet::of(&rules)
    }
}

/// Whether a command line selects the twos scheduler (`-s twos`, `--scheduler twos`).
pub fn selects_twos(command: &str) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    words.windows(2).any(|w| (w[0] == "-s" || w[0] == "--scheduler") && w[1] == "twos")
        || words.iter().any(|w| *w == "-stwos" || *w == "--scheduler=twos")
}

/// `kernel-without-twos`: the kernel refused the scheduler as unknown, ours accepted it
/// silently (what a kernel with twos answers).
pub fn twos_refused_by_kernel_only(g: &Command, o: &Command) -> bool {
    g.stdout.is_empty()
        && g.stderr.as_deref() == Some(&["Scheduler or persistence engine not found".to_string()][..])
        && g.exit == Some(255)
        && o.stdout.is_empty()
        && o.stderr.as_ref().is_none_or(|e| e.is_empty())
        && o.exit == Some(0)
}

/// `kernel-without-twos`: our `-L` stdout without the service lines whose scheduler is twos and
/// the real-server lines (`  -> `) under them; also how many lines went.
pub fn without_twos_services(body: Vec<BodyLine>) -> (Vec<BodyLine>, usize) {
    let mut kept = Vec::with_capacity(body.len());
    let mut in_twos = false;
    let mut dropped = 0;
    for b in body {
        if b.part == Part::Stdout {
            let fields: Vec<&str> = b.text.split_whitespace().collect();
            let is_service = matches!(fields.first(), Some(&("TCP" | "UDP" | "SCTP" | "FWM")));
            if is_service {
                in_twos = fields.get(2) == Some(&"twos");
            } else if !b.text.starts_with("  -> ") {
                in_twos = false;
            }
            if in_twos {
                dropped += 1;
                continue;
            }
        } else {
            in_twos = false;
        }
        kept.push(b);
    }
    (kept, dropped)
}

/// What a command block lists, which decides the rules that can apply to its stdout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Listing {
    /// `-L -c`: connection entries.
    pub connections: bool,
    /// `--rate` or `--stats`: counters.
    pub counters: bool,
}

impl Listing {
    /// Classifies a command line. Short options may be bundled (`-Lnc`), as ipvsadm allows.
    pub fn of(command: &str) -> Listing {
        let words: Vec<&str> = command.split_whitespace().collect();
        let short = |c: char| {
            words.iter().any(|w| {
                w.strip_prefix('-')
                    .filter(|rest| !rest.starts_with('-') && rest.chars().all(|c| c.is_ascii_alphanumeric()))
                    .is_some_and(|rest| rest.contains(c))
            })
        };
        let long = |name: &str| words.contains(&name);
        let list = short('L') || short('l') || long("--list");
        Listing {
            connections: list && (short('c') || long("--connection")),
            counters: long("--rate") || long("--stats"),
        }
    }
}

/// How a pair of stdout lines compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Same,
    /// Different bytes, accepted by this rule.
    Allowed(Rule),
    Differ,
}

/// Compares one golden stdout line with one of ours under the enabled rules.
pub fn compare_stdout_line(rules: RuleSet, listing: Listing, golden: &str, ours: &str) -> Verdict {
    if golden == ours {
        return Verdict::Same;
    }
    if rules.has(Rule::HeaderSize) && same_header_but_size(golden, ours) {
        return Verdict::Allowed(Rule::HeaderSize);
    }
    if listing.connections && rules.has(Rule::ConnExpiry1s) {
        if let (Some(g), Some(o)) = (ConnEntry::parse(golden), ConnEntry::parse(ours)) {
            if g.same_but_expiry(&o) {
                return Verdict::Allowed(Rule::ConnExpiry1s);
            }
        }
    }
    if listing.counters && rules.has(Rule::RateValues) && same_layout_but_counters(golden, ours) {
        return Verdict::Allowed(Rule::RateValues);
    }
    Verdict::Differ
}

/// `IP Virtual Server version 1.2.1 (size=4096)` -> (`1.2.1`, `4096`).
fn header_version(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("IP Virtual Server version ")?;
    let (version, size) = rest.split_once(" (size=")?;
    let size = size.strip_suffix(')')?;
    (!size.is_empty() && size.bytes().all(|b| b.is_ascii_digit())).then_some(version)
}

fn same_header_but_size(golden: &str, ours: &str) -> bool {
    matches!((header_version(golden), header_version(ours)), (Some(g), Some(o)) if g == o)
}

/// A connection entry, `TCP 14:58  ESTABLISHED 198.51.100.2:37008 203.0.113.10:80 ...`, split
/// around its expiry. ipvsadm prints the expiry as `%02d:%02d`, so minutes can outgrow two
/// digits; keeping the text before and after it lets every other byte be compared exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnEntry<'a> {
    /// The protocol and the space after it.
    pub before: &'a str,
    /// Seconds.
    pub expiry: u32,
    /// Everything after the expiry, padding included.
    pub after: &'a str,
}

impl<'a> ConnEntry<'a> {
    pub fn parse(line: &'a str) -> Option<ConnEntry<'a>> {
        let proto_end = line.find(' ')?;
        if proto_end == 0 || !line[..proto_end].bytes().all(|b| b.is_ascii_uppercase()) {
            return None;
        }
        // The protocol is padded to three columns (`%-3s`): `IP  00:55` for a firewall-mark
        // template has two blanks before the expiry.
        let start = proto_end + line[proto_end..].bytes().take_while(|&b| b == b' ').count();
        let len = line[start..].find(' ').unwrap_or(line.len() - start);
        let (mm, ss) = line[start..start + len].split_once(':')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(mm) || ss.len() != 2 || !digits(ss) {
            return None;
        }
        let (mm, ss): (u32, u32) = (mm.parse().ok()?, ss.parse().ok()?);
        if ss >= 60 {
            return None;
        }
        Some(ConnEntry {
            before: &line[..start],
            expiry: mm.checked_mul(60)?.checked_add(ss)?,
            after: &line[start + len..],
        })
    }

    /// Everything but the expiry.
    pub fn key(&self) -> (&'a str, &'a str) {
        (self.before, self.after)
    }

    /// The source column, the client's address and port.
    pub fn client(&self) -> Option<&'a str> {
        self.after.split_whitespace().nth(1)
    }

    pub fn same_but_expiry(&self, other: &ConnEntry<'_>) -> bool {
        self.key() == other.key() && self.expiry.abs_diff(other.expiry) <= 1
    }
}

/// Pairs the connection entries of two listings regardless of order (`conn-order`): each golden
/// entry gets at most one of ours. Entries are given as (index, line); only lines that parse as
/// entries take part. Returns (golden index, our index) pairs.
///
/// Without `conn-expiry-1s` an entry pairs only with a byte-identical one. With it, entries
/// pair when all but the expiry match and the expiries are at most a second apart; within a
/// group of equal keys, sorting both sides by expiry and walking them together finds the most
/// pairs (a tolerance interval of fixed width never rewards skipping a closer partner).
pub fn pair_conn_entries(
    golden: &[(usize, &str)],
    ours: &[(usize, &str)],
    expiry_tolerance: bool,
) -> Vec<(usize, usize)> {
    let (g_groups, o_groups) =
        (group_entries(golden, expiry_tolerance), group_entries(ours, expiry_tolerance));
    let mut pairs = Vec::new();
    for (key, gs) in &g_groups {
        let Some(os) = o_groups.get(key) else { continue };
        let (mut i, mut j) = (0, 0);
        while i < gs.len() && j < os.len() {
            let (ge, gi) = gs[i];
            let (oe, oj) = os[j];
            if ge.abs_diff(oe) <= 1 {
                pairs.push((gi, oj));
                i += 1;
                j += 1;
            } else if ge < oe {
                i += 1;
            } else {
                j += 1;
            }
        }
    }
    pairs.sort();
    pairs
}

/// Entries grouped by what must match exactly, each group's (expiry, index) sorted.
fn group_entries<'a>(
    side: &[(usize, &'a str)],
    expiry_tolerance: bool,
) -> BTreeMap<(&'a str, &'a str), Vec<(u32, usize)>> {
    let mut groups: BTreeMap<(&str, &str), Vec<(u32, usize)>> = BTreeMap::new();
    for &(idx, line) in side {
        let Some(e) = ConnEntry::parse(line) else { continue };
        let (key, expiry) = if expiry_tolerance { (e.key(), e.expiry) } else { ((line, ""), 0) };
        groups.entry(key).or_default().push((expiry, idx));
    }
    for v in groups.values_mut() {
        v.sort_unstable();
    }
    groups
}

/// ipvsadm prints five counters in both layouts (Conns/CPS, InPkts/InPPS, OutPkts/OutPPS,
/// InBytes/InBPS, OutBytes/OutBPS), each right-aligned, large ones abbreviated with K/M/G/T.
const COUNTERS: usize = 5;

/// Splits a counters line into its identity (`TCP  203.0.113.10:80`, `  -> 192.0.2.11:80`,
/// `FWM  7`) and the end offsets of its counters. Taking exactly five from the right keeps a
/// numeric identity such as a firewall mark out of the counters.
fn counters_line(line: &str) -> Option<(&str, Vec<usize>)> {
    let mut ends = Vec::with_capacity(COUNTERS);
    let mut rest = line;
    for _ in 0..COUNTERS {
        let end = rest.len();
        let start = rest.rfind(' ')? + 1;
        let word = &rest[start..end];
        let digits = word.strip_suffix(['K', 'M', 'G', 'T']).unwrap_or(word);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        ends.push(end);
        rest = rest[..start].trim_end_matches(' ');
    }
    ends.reverse();
    (!rest.is_empty()).then_some((rest, ends))
}

fn same_layout_but_counters(golden: &str, ours: &str) -> bool {
    matches!((counters_line(golden), counters_line(ours)), (Some(g), Some(o)) if g == o)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: RuleSet = RuleSet(0b1111);
    const CONNS: Listing = Listing { connections: true, counters: false };
    const COUNTS: Listing = Listing { connections: false, counters: true };
    const PLAIN: Listing = Listing { connections: false, counters: false };

    #[test]
    fn allow_list_parses_scopes_and_reasons() {
        let text = "# comment\n\nheader-size * # size differs\nconn-order sched-rr   # random seed\n";
        let list = AllowList::parse(text, "allow.txt").unwrap();
        assert_eq!(list.grants.len(), 2);
        assert_eq!(list.grants[1].scenario.as_deref(), Some("sched-rr"));
        assert_eq!(list.grants[1].reason, "random seed");
        assert_eq!(list.grants[1].line, 4);
        assert_eq!(list.rules_for("sched-rr"), RuleSet::of(&[Rule::HeaderSize, Rule::ConnOrder]));
        assert_eq!(list.rules_for("other"), RuleSet::of(&[Rule::HeaderSize]));
    }

    #[test]
    fn allow_list_errors_name_file_and_line() {
        let err = AllowList::parse("header-size * # ok\nconn-ordr * # typo\n", "x/allow.txt").unwrap_err();
        assert!(err.to_string().starts_with("x/allow.txt:2: unknown rule `conn-ordr`"), "{err}");
        let err = AllowList::parse("conn-order # no scope\n", "a").unwrap_err();
        assert!(err.to_string().starts_with("a:1: expected"), "{err}");
        let err = AllowList::parse("conn-order *\n", "a").unwrap_err();
        assert!(err.to_string().contains("needs a reason"), "{err}");
    }

    #[test]
    fn rule_names_round_trip() {
        for r in Rule::ALL {
            assert_eq!(Rule::from_name(r.name()), Some(r));
            assert!(!r.reason().is_empty() && !r.allows().is_empty());
        }
    }

    #[test]
    fn listing_classification() {
        assert_eq!(Listing::of("ipvsadm -L -n -c"), CONNS);
        assert_eq!(Listing::of("ipvsadm -Lnc"), CONNS);
        assert_eq!(Listing::of("ipvsadm --list -n --connection --sort"), CONNS);
        assert_eq!(Listing::of("ipvsadm -l -c --exact"), CONNS);
        assert_eq!(Listing::of("ipvsadm -L -n"), PLAIN);
        assert_eq!(Listing::of("ipvsadm -c"), PLAIN, "-c without a list is not a listing");
        assert_eq!(Listing::of("ipvsadm -L -n --rate --exact"), COUNTS);
        assert_eq!(Listing::of("ipvsadm -L -n -t 203.0.113.10:80 --stats"), COUNTS);
    }

    #[test]
    fn header_size_accepts_only_the_size() {
        let k = "IP Virtual Server version 1.2.1 (size=4096)";
        let rules = RuleSet::of(&[Rule::HeaderSize]);
        let v = |o| compare_stdout_line(rules, PLAIN, k, o);
        assert_eq!(v("IP Virtual Server version 1.2.1 (size=65536)"), Verdict::Allowed(Rule::HeaderSize));
        assert_eq!(v("IP Virtual Server version 1.2.0 (size=4096)"), Verdict::Differ);
        assert_eq!(v("IP Virtual Server version 1.2.1 (size=65536) "), Verdict::Differ);
        assert_eq!(v("IP Virtual Server version 1.2.1 (size=)"), Verdict::Differ);
        let none =
            compare_stdout_line(RuleSet::default(), PLAIN, k, "IP Virtual Server version 1.2.1 (size=1)");
        assert_eq!(none, Verdict::Differ, "not enabled");
    }

    const E: &str = "TCP 14:58  ESTABLISHED 198.51.100.2:37008 203.0.113.10:80    192.0.2.11:80";

    #[test]
    fn conn_entry_parses_around_the_expiry() {
        let e = ConnEntry::parse(E).unwrap();
        assert_eq!(e.before, "TCP ");
        assert_eq!(e.expiry, 14 * 60 + 58);
        assert!(e.after.starts_with("  ESTABLISHED "));
        assert_eq!(e.client(), Some("198.51.100.2:37008"));
        assert_eq!(ConnEntry::parse("TCP 100:00  ESTABLISHED x").unwrap().expiry, 6000);
        assert_eq!(ConnEntry::parse("pro expire state       source"), None);
        assert_eq!(ConnEntry::parse("TCP 14:61  ESTABLISHED x"), None);
        // A firewall-mark template: the protocol padded to three columns.
        let t = ConnEntry::parse("IP  00:55  ASSURED     198.51.100.2:0     0.0.0.7:0          192.0.2.12:0").unwrap();
        assert_eq!((t.before, t.expiry, t.client()), ("IP  ", 55, Some("198.51.100.2:0")));
    }

    #[test]
    fn conn_expiry_tolerates_one_second_only() {
        let rules = RuleSet::of(&[Rule::ConnExpiry1s]);
        let v = |o: &str| compare_stdout_line(rules, CONNS, E, o);
        assert_eq!(v(&E.replace("14:58", "14:59")), Verdict::Allowed(Rule::ConnExpiry1s));
        assert_eq!(v(&E.replace("14:58", "14:57")), Verdict::Allowed(Rule::ConnExpiry1s));
        assert_eq!(v(&E.replace("14:58", "15:00")), Verdict::Differ);
        assert_eq!(v(&E.replace("14:58  ESTABLISHED", "14:59  SYN_RECV   ")), Verdict::Differ);
        assert_eq!(v(&E.replace("14:58", "14:59").replace(":37008", ":37009")), Verdict::Differ);
        assert_eq!(v(&format!("{} ", E.replace("14:58", "14:59"))), Verdict::Differ, "padding counts");
        // Across a minute boundary: 15:00 vs 14:59 is one second.
        let at = E.replace("14:58", "15:00");
        assert_eq!(
            compare_stdout_line(rules, CONNS, &at, &E.replace("14:58", "14:59")),
            Verdict::Allowed(Rule::ConnExpiry1s)
        );
        // Only in connection listings.
        assert_eq!(compare_stdout_line(rules, PLAIN, E, &E.replace("14:58", "14:59")), Verdict::Differ);
    }

    fn entries(lines: &[String]) -> Vec<(usize, &str)> {
        lines.iter().map(String::as_str).enumerate().collect()
    }

    #[test]
    fn conn_order_pairs_permutations_and_leaves_the_missing() {
        let a = E.to_string();
        let b = E.replace(":37008", ":36986");
        let c = E.replace(":37008", ":37000");
        let golden = vec![a.clone(), b.clone(), c.clone()];
        let ours = vec![c.clone(), a.clone(), b.clone()];
        assert_eq!(
            pair_conn_entries(&entries(&golden), &entries(&ours), false),
            vec![(0, 1), (1, 2), (2, 0)]
        );
        let short = vec![c, a];
        assert_eq!(pair_conn_entries(&entries(&golden), &entries(&short), false), vec![(0, 1), (2, 0)]);
    }

    #[test]
    fn conn_order_with_expiry_pairs_within_tolerance() {
        let at = |t: &str| E.replace("14:58", t);
        // Greedy in listing order would pair golden 14:58 with our 14:57 and strand golden 14:57.
        let golden = vec![at("14:58"), at("14:57")];
        let ours = vec![at("14:57"), at("14:59")];
        assert_eq!(pair_conn_entries(&entries(&golden), &entries(&ours), true).len(), 2);
        let far = vec![at("14:55"), at("14:59")];
        assert_eq!(pair_conn_entries(&entries(&golden), &entries(&far), true), vec![(0, 1)]);
        assert_eq!(
            pair_conn_entries(&entries(&golden), &entries(&ours), false),
            vec![(1, 0)],
            "exact without the rule"
        );
    }

    const SVC: &str = "TCP  203.0.113.10:8080                   1     2131     3261   110916  115513K";

    #[test]
    fn counters_line_splits_identity_and_columns() {
        let (id, ends) = counters_line(SVC).unwrap();
        assert_eq!(id, "TCP  203.0.113.10:8080");
        assert_eq!(*ends.last().unwrap(), SVC.len());
        let fwm = "FWM  7                                   0        0        0        0        0";
        assert_eq!(counters_line(fwm).unwrap().0, "FWM  7");
        assert_eq!(
            counters_line("Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes"),
            None
        );
        assert_eq!(counters_line("  -> RemoteAddress:Port"), None);
    }

    #[test]
    fn rate_values_accepts_other_numbers_in_the_same_columns() {
        let rules = RuleSet::of(&[Rule::RateValues]);
        let v = |o: &str| compare_stdout_line(rules, COUNTS, SVC, o);
        let ok = "TCP  203.0.113.10:8080                   0       12        7      999       1M";
        assert_eq!(ok.len(), SVC.len());
        assert_eq!(v(ok), Verdict::Allowed(Rule::RateValues));
        // Another service, same width.
        assert_eq!(v(&SVC.replace("203.0.113.10:8080", "203.0.113.11:8080")), Verdict::Differ);
        // A counter moved out of its column.
        assert_eq!(
            v("TCP  203.0.113.10:8080                   1     2131     3261    110916 115513K"),
            Verdict::Differ
        );
        // A counter missing.
        assert_eq!(
            v("TCP  203.0.113.10:8080                            2131     3261   110916  115513K"),
            Verdict::Differ
        );
        // Only in --rate/--stats listings.
        assert_eq!(compare_stdout_line(rules, PLAIN, SVC, ok), Verdict::Differ);
        // Non-counter lines stay exact.
        let hdr = "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes";
        assert_eq!(compare_stdout_line(rules, COUNTS, hdr, &hdr.replace("Conns", "Connz")), Verdict::Differ);
    }

    #[test]
    fn all_rules_still_reject_a_different_line() {
        let ours = "TCP  203.0.113.10:80 rr";
        for (listing, golden) in
            [(CONNS, E), (COUNTS, SVC), (PLAIN, "IP Virtual Server version 1.2.1 (size=4096)")]
        {
            assert_eq!(compare_stdout_line(ALL, listing, golden, ours), Verdict::Differ);
        }
    }
}
