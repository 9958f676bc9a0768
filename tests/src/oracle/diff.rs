//! Compares two transcripts of one scenario item by item.
//!
//! Items are aligned on their identity (a heading's title, a command's command line, a
//! record's text) with a longest-common-subsequence match, so one item missing in the middle
//! shows as one missing item instead of shifting every later comparison. Between two aligned
//! items, what is left is paired in order by kind (so `conn 3 ... -> rs1` against
//! `conn 3 ... -> rs2` reads as one changed record); the rest is missing from ours or extra in
//! ours. Inside a command block the lines are aligned the same way, with the allow-list rules
//! deciding which stdout lines count as the same.

use super::rules::{
    compare_stdout_line, pair_conn_entries, selects_twos, twos_refused_by_kernel_only, without_twos_services, ConnEntry,
    Listing, Rule, RuleSet, Verdict,
};
use super::transcript::{parse, BodyLine, Command, Item, Located, Part};
use super::AllowList;
use std::collections::{BTreeMap, BTreeSet};

/// The result of comparing a scenario's golden transcript with ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub scenario: String,
    /// The rules the allow-list enabled for this scenario.
    pub rules: RuleSet,
    /// Aligned positions: pairs, plus items only one side has.
    pub items: usize,
    pub mismatches: Vec<Mismatch>,
    /// How often each rule let a difference through: lines whose bytes differ, and for
    /// `conn-order` the entries that changed place.
    pub allowed: BTreeMap<Rule, usize>,
}

impl Comparison {
    pub fn matches(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// One differing item. `golden` is `None` for an item only ours has, `ours` for one only the
/// golden transcript has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub golden: Option<Located>,
    pub ours: Option<Located>,
    /// The item's lines, aligned; the report shows the changed ones with some context.
    pub lines: Vec<DiffLine>,
    /// Our connection entries are shown in golden's order (`conn-order`), so our line numbers
    /// in this item are not ascending.
    pub reordered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchKind {
    Changed,
    MissingFromOurs,
    ExtraInOurs,
}

impl Mismatch {
    pub fn kind(&self) -> MismatchKind {
        match (&self.golden, &self.ours) {
            (Some(_), Some(_)) => MismatchKind::Changed,
            (Some(_), None) => MismatchKind::MissingFromOurs,
            _ => MismatchKind::ExtraInOurs,
        }
    }
}

/// A line of an item's diff, with its 1-based line number(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffLine {
    /// The same in both (possibly by a rule); the golden text.
    Same {
        text: String,
        golden: usize,
        ours: usize,
    },
    Golden {
        text: String,
        line: usize,
    },
    Ours {
        text: String,
        line: usize,
    },
}

impl DiffLine {
    pub fn is_change(&self) -> bool {
        !matches!(self, DiffLine::Same { .. })
    }
}

/// Compares the text of two transcripts of `scenario` under the rules `allow` grants it.
pub fn compare(scenario: &str, golden: &str, ours: &str, allow: &AllowList) -> Comparison {
    let rules = allow.rules_for(scenario);
    let (golden, ours) = (parse(golden), parse(ours));
    let mut cmp = Comparison {
        scenario: scenario.to_string(),
        rules,
        items: 0,
        mismatches: Vec::new(),
        allowed: BTreeMap::new(),
    };
    for pos in align_items(&golden, &ours) {
        cmp.items += 1;
        let (g, o) = (pos.0.map(|i| &golden[i]), pos.1.map(|j| &ours[j]));
        let diff = match (g, o) {
            (Some(g), Some(o)) => compare_items(g, o, rules, &mut cmp.allowed),
            (Some(g), None) => Some((golden_lines(g), false)),
            (None, Some(o)) => Some((our_lines(o), false)),
            (None, None) => None,
        };
        if let Some((lines, reordered)) = diff {
            cmp.mismatches.push(Mismatch { golden: g.cloned(), ours: o.cloned(), lines, reordered });
        }
    }
    cmp
}

/// Longest common subsequence of two sequences under `eq`, as increasing index pairs.
fn lcs(n: usize, m: usize, eq: impl Fn(usize, usize) -> bool) -> Vec<(usize, usize)> {
    // Transcripts of one scenario mostly agree: matching the common prefix and suffix first
    // (always part of some longest match) keeps the quadratic table to the part that differs.
    let mut pre = 0;
    while pre < n && pre < m && eq(pre, pre) {
        pre += 1;
    }
    let mut suf = 0;
    while suf < n - pre && suf < m - pre && eq(n - 1 - suf, m - 1 - suf) {
        suf += 1;
    }
    let (a, b) = (n - pre - suf, m - pre - suf);
    // len[i * w + j]: length of the longest match of the middle parts from (i, j) on.
    let w = b + 1;
    let mut len = vec![0u32; (a + 1) * w];
    for i in (0..a).rev() {
        for j in (0..b).rev() {
            len[i * w + j] = if eq(pre + i, pre + j) {
                len[(i + 1) * w + j + 1] + 1
            } else {
                len[(i + 1) * w + j].max(len[i * w + j + 1])
            };
        }
    }
    let mut pairs: Vec<(usize, usize)> = (0..pre).map(|i| (i, i)).collect();
    let (mut i, mut j) = (0, 0);
    while i < a && j < b {
        if eq(pre + i, pre + j) && len[i * w + j] == len[(i + 1) * w + j + 1] + 1 {
            pairs.push((pre + i, pre + j));
            i += 1;
            j += 1;
        } else if len[(i + 1) * w + j] >= len[i * w + j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    pairs.extend((0..suf).map(|k| (n - suf + k, m - suf + k)));
    pairs
}

/// Items that anchor the alignment: same kind and same identity.
fn same_identity(g: &Item, o: &Item) -> bool {
    match (g, o) {
        (Item::Heading(a), Item::Heading(b)) | (Item::Record(a), Item::Record(b)) => a == b,
        (Item::Command(a), Item::Command(b)) => a.line == b.line,
        _ => false,
    }
}

fn kind_index(item: &Item) -> usize {
    match item {
        Item::Heading(_) => 0,
        Item::Record(_) => 1,
        Item::Command(_) => 2,
    }
}

/// Aligned positions, in golden order; an item only ours has comes after the golden items of
/// the stretch it sits in.
fn align_items(golden: &[Located], ours: &[Located]) -> Vec<(Option<usize>, Option<usize>)> {
    let anchors = lcs(golden.len(), ours.len(), |i, j| same_identity(&golden[i].item, &ours[j].item));
    let mut out = Vec::new();
    let (mut gi, mut oj) = (0, 0);
    let ends = anchors.iter().map(|&(i, j)| (i, j, true)).chain([(golden.len(), ours.len(), false)]);
    for (ga, oa, anchored) in ends {
        // The stretch between two anchors: pair what remains in order, kind by kind.
        let mut by_kind: [Vec<usize>; 3] = Default::default();
        for (j, it) in ours[oj..oa].iter().enumerate() {
            by_kind[kind_index(&it.item)].push(oj + j);
        }
        let mut taken = [0usize; 3];
        for (i, it) in golden[gi..ga].iter().enumerate() {
            let k = kind_index(&it.item);
            let partner = by_kind[k].get(taken[k]).copied();
            taken[k] += 1;
            out.push((Some(gi + i), partner));
        }
        for (rest, taken) in by_kind.iter().zip(taken) {
            out.extend(rest.iter().skip(taken).map(|&j| (None, Some(j))));
        }
        if anchored {
            out.push((Some(ga), Some(oa)));
        }
        (gi, oj) = (ga + 1, oa + 1);
    }
    out
}

/// An item's lines as written in its file, with their line numbers.
fn item_lines(it: &Located) -> Vec<(String, usize)> {
    match &it.item {
        Item::Heading(t) => vec![(format!("### {t}"), it.line)],
        Item::Record(t) => vec![(t.clone(), it.line)],
        Item::Command(c) => std::iter::once((format!("$ {}", c.line), it.line))
            .chain(c.body(it.line).into_iter().map(|b| (b.text, b.line)))
            .collect(),
    }
}

fn golden_lines(it: &Located) -> Vec<DiffLine> {
    item_lines(it).into_iter().map(|(text, line)| DiffLine::Golden { text, line }).collect()
}

fn our_lines(it: &Located) -> Vec<DiffLine> {
    item_lines(it).into_iter().map(|(text, line)| DiffLine::Ours { text, line }).collect()
}

/// An item's aligned lines, and whether our connection entries were put in golden's order.
type ItemDiff = (Vec<DiffLine>, bool);

/// `None` when the two items count as the same.
fn compare_items(
    g: &Located,
    o: &Located,
    rules: RuleSet,
    allowed: &mut BTreeMap<Rule, usize>,
) -> Option<ItemDiff> {
    if let (Item::Command(gc), Item::Command(oc)) = (&g.item, &o.item) {
        return compare_commands((g.line, gc), (o.line, oc), rules, allowed);
    }
    if g.item == o.item {
        return None;
    }
    let mut lines = golden_lines(g);
    lines.extend(our_lines(o));
    Some((lines, false))
}

fn compare_commands(
    (g_start, g): (usize, &Command),
    (o_start, o): (usize, &Command),
    rules: RuleSet,
    allowed: &mut BTreeMap<Rule, usize>,
) -> Option<ItemDiff> {
    let listing = Listing::of(&g.line);
    let golden = g.body(g_start);
    let mut ours = o.body(o_start);
    let mut reordered = false;
    if rules.has(Rule::KernelWithoutTwos) {
        if g.line == o.line && selects_twos(&g.line) && twos_refused_by_kernel_only(g, o) {
            *allowed.entry(Rule::KernelWithoutTwos).or_default() += 1;
            return None;
        }
        let dropped;
        (ours, dropped) = without_twos_services(ours);
        if dropped > 0 {
            *allowed.entry(Rule::KernelWithoutTwos).or_default() += dropped;
        }
    }
    if listing.connections && rules.has(Rule::ConnOrder) {
        let moved;
        (ours, moved, reordered) = follow_golden_entry_order(&golden, ours, rules.has(Rule::ConnExpiry1s));
        if moved > 0 {
            *allowed.entry(Rule::ConnOrder).or_default() += moved;
        }
    }
    let verdict = |i: usize, j: usize| {
        let (gl, ol) = (&golden[i], &ours[j]);
        match (gl.part, ol.part) {
            (Part::Stdout, Part::Stdout) => compare_stdout_line(rules, listing, &gl.text, &ol.text),
            (a, b) if a == b && gl.text == ol.text => Verdict::Same,
            _ => Verdict::Differ,
        }
    };
    let pairs = lcs(golden.len(), ours.len(), |i, j| verdict(i, j) != Verdict::Differ);

    let mut lines = Vec::new();
    if g.line == o.line {
        lines.push(DiffLine::Same { text: format!("$ {}", g.line), golden: g_start, ours: o_start });
    } else {
        lines.push(DiffLine::Golden { text: format!("$ {}", g.line), line: g_start });
        lines.push(DiffLine::Ours { text: format!("$ {}", o.line), line: o_start });
    }
    let (mut i, mut j) = (0, 0);
    let ends = pairs.iter().map(|&(a, b)| (a, b, true)).chain([(golden.len(), ours.len(), false)]);
    for (pi, pj, paired) in ends {
        lines.extend(golden[i..pi].iter().map(|b| DiffLine::Golden { text: b.text.clone(), line: b.line }));
        lines.extend(ours[j..pj].iter().map(|b| DiffLine::Ours { text: b.text.clone(), line: b.line }));
        if paired {
            if let Verdict::Allowed(rule) = verdict(pi, pj) {
                *allowed.entry(rule).or_default() += 1;
            }
            let (gl, ol) = (&golden[pi], &ours[pj]);
            lines.push(DiffLine::Same { text: gl.text.clone(), golden: gl.line, ours: ol.line });
        }
        (i, j) = (pi + 1, pj + 1);
    }
    lines.iter().any(DiffLine::is_change).then_some((lines, reordered))
}

/// For `conn-order`: rearranges our connection entries, within the lines that held them, into
/// golden's order, so that the line alignment sees paired entries side by side. An unpaired
/// entry of ours with the same client address as an unpaired golden one (most likely the same
/// connection in another state) takes that one's rank, so the diff shows the two as `-`/`+`;
/// the other unpaired ones follow. Also returns how many paired entries changed place, and
/// whether any entry did.
fn follow_golden_entry_order(
    golden: &[BodyLine],
    mut ours: Vec<BodyLine>,
    expiry_tolerance: bool,
) -> (Vec<BodyLine>, usize, bool) {
    let entries = |lines: &[BodyLine]| -> Vec<usize> {
        (0..lines.len())
            .filter(|&i| lines[i].part == Part::Stdout && ConnEntry::parse(&lines[i].text).is_some())
            .collect()
    };
    let (g_idx, o_idx) = (entries(golden), entries(&ours));
    let g_entries: Vec<(usize, &str)> = g_idx.iter().map(|&i| (i, golden[i].text.as_str())).collect();
    let o_entries: Vec<(usize, &str)> = o_idx.iter().map(|&i| (i, ours[i].text.as_str())).collect();
    let pairs = pair_conn_entries(&g_entries, &o_entries, expiry_tolerance);
    // Our entry -> the golden index whose rank it takes.
    let mut rank: BTreeMap<usize, usize> = pairs.iter().map(|&(g, o)| (o, g)).collect();
    let paired_ours: BTreeSet<usize> = rank.keys().copied().collect();
    let paired_golden: BTreeSet<usize> = pairs.iter().map(|&(g, _)| g).collect();
    let mut lone_golden: Vec<usize> = g_idx.iter().copied().filter(|g| !paired_golden.contains(g)).collect();
    for &o in &o_idx {
        if rank.contains_key(&o) {
            continue;
        }
        let Some(c) = ConnEntry::parse(&ours[o].text).and_then(|e| e.client()) else { continue };
        if let Some(k) = lone_golden
            .iter()
            .position(|&g| ConnEntry::parse(&golden[g].text).and_then(|e| e.client()) == Some(c))
        {
            rank.insert(o, lone_golden.remove(k));
        }
    }
    let mut order = o_idx.clone();
    order.sort_by_key(|o| (rank.get(o).copied().unwrap_or(usize::MAX), *o));
    let moved = o_idx.iter().zip(&order).filter(|(slot, o)| slot != o && paired_ours.contains(o)).count();
    let reordered = order != o_idx;
    let lines: Vec<BodyLine> = order.iter().map(|&o| ours[o].clone()).collect();
    for (slot, line) in o_idx.into_iter().zip(lines) {
        ours[slot] = line;
    }
    (ours, moved, reordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &str = "\
### rr with three servers
# kernel
$ ipvsadm -A -t 203.0.113.10:80 -s rr
[exit 0]
conn 1 198.51.100.2:40001 -> rs3
$ ipvsadm -L -n
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  203.0.113.10:80 rr
  -> 192.0.2.13:80                Masq    1      0          1         
[exit 0]
$ ipvsadm -L -n -c
IPVS connection entries
pro expire state       source             virtual            destination
TCP 01:58  TIME_WAIT   198.51.100.2:40001 203.0.113.10:80    192.0.2.13:80
TCP 01:57  TIME_WAIT   198.51.100.2:40002 203.0.113.10:80    192.0.2.12:80
TCP 01:56  TIME_WAIT   198.51.100.2:40003 203.0.113.10:80    192.0.2.11:80
[exit 0]
$ ipvsadm -L -n --stats
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  203.0.113.10:80                     3       18       12     1080     1383
  -> 192.0.2.13:80                       3       18       12     1080     1383
[exit 0]
$ ipvsadm -a -t 203.0.113.10:80 -r 192.0.2.99:80 -x 10 -y 20
--- stderr
Numerical result out of range
[exit 255]
";

    fn exact(golden: &str, ours: &str) -> Comparison {
        compare("t", golden, ours, &AllowList::default())
    }

    fn with(rules: &[Rule], golden: &str, ours: &str) -> Comparison {
        let text: String = rules.iter().map(|r| format!("{r} * # test\n")).collect();
        compare("t", golden, ours, &AllowList::parse(&text, "test").unwrap())
    }

    fn kinds(c: &Comparison) -> Vec<MismatchKind> {
        c.mismatches.iter().map(Mismatch::kind).collect()
    }

    #[test]
    fn identical_transcripts_match() {
        let c = exact(GOLDEN, GOLDEN);
        assert!(c.matches(), "{c}");
        assert_eq!(c.items, 7);
        assert!(c.allowed.is_empty());
    }

    #[test]
    fn comments_are_ignored() {
        let ours = GOLDEN.replace("# kernel\n", "# ours, run elsewhere\n# another\n");
        assert!(exact(GOLDEN, &ours).matches());
    }

    #[test]
    fn one_character_change_differs() {
        let ours = GOLDEN.replace("Masq    1      0          1 ", "Masq    1      0          0 ");
        let c = exact(GOLDEN, &ours);
        assert_eq!(kinds(&c), vec![MismatchKind::Changed]);
        let m = &c.mismatches[0];
        assert_eq!((m.golden.as_ref().unwrap().line, m.ours.as_ref().unwrap().line), (6, 6));
        let changed: Vec<&DiffLine> = m.lines.iter().filter(|l| l.is_change()).collect();
        assert_eq!(changed.len(), 2);
        assert!(matches!(changed[0], DiffLine::Golden { line: 11, .. }));
        assert!(matches!(changed[1], DiffLine::Ours { line: 11, .. }));
    }

    #[test]
    fn trailing_space_change_differs() {
        let ours =
            GOLDEN.replace("Masq    1      0          1         \n", "Masq    1      0          1        \n");
        assert_eq!(kinds(&exact(GOLDEN, &ours)), vec![MismatchKind::Changed]);
        // No rule forgives it either.
        assert!(!with(&Rule::ALL, GOLDEN, &ours).matches());
    }

    #[test]
    fn changed_exit_code_differs() {
        let ours = GOLDEN.replace("[exit 255]", "[exit 2]");
        let c = with(&Rule::ALL, GOLDEN, &ours);
        assert_eq!(kinds(&c), vec![MismatchKind::Changed]);
        assert!(c.mismatches[0].lines.contains(&DiffLine::Golden { text: "[exit 255]".into(), line: 30 }));
    }

    #[test]
    fn missing_stderr_differs() {
        let ours = GOLDEN.replace("--- stderr\nNumerical result out of range\n", "");
        let c = with(&Rule::ALL, GOLDEN, &ours);
        assert_eq!(kinds(&c), vec![MismatchKind::Changed]);
        let gone: Vec<&DiffLine> = c.mismatches[0].lines.iter().filter(|l| l.is_change()).collect();
        assert_eq!(gone.len(), 2, "the marker and the message: {gone:?}");
    }

    #[test]
    fn stderr_moved_to_stdout_differs() {
        let ours = GOLDEN.replace("--- stderr\nNumerical", "Numerical");
        assert!(!with(&Rule::ALL, GOLDEN, &ours).matches());
    }

    #[test]
    fn extra_item_at_the_end_is_reported() {
        let ours = format!("{GOLDEN}conn 9 198.51.100.2:40009 -> rs1\n");
        let c = exact(GOLDEN, &ours);
        assert_eq!(kinds(&c), vec![MismatchKind::ExtraInOurs]);
        assert_eq!(c.items, 8);
        assert_eq!(c.mismatches[0].ours.as_ref().unwrap().line, 31);
    }

    #[test]
    fn missing_item_in_the_middle_does_not_shift_the_rest() {
        let ours = GOLDEN.replace("conn 1 198.51.100.2:40001 -> rs3\n", "");
        let c = exact(GOLDEN, &ours);
        assert_eq!(kinds(&c), vec![MismatchKind::MissingFromOurs]);
        assert_eq!(c.items, 7);
    }

    #[test]
    fn cut_short_transcript_reports_the_rest_missing() {
        let cut = &GOLDEN[..GOLDEN.find("TCP 01:57").unwrap()];
        let c = exact(GOLDEN, cut);
        // The -c block lost its tail and exit line; the two blocks after it are missing.
        assert_eq!(
            kinds(&c),
            vec![MismatchKind::Changed, MismatchKind::MissingFromOurs, MismatchKind::MissingFromOurs]
        );
    }

    #[test]
    fn changed_record_pairs_with_its_counterpart() {
        let ours = GOLDEN.replace("-> rs3", "-> rs1");
        let c = exact(GOLDEN, &ours);
        assert_eq!(kinds(&c), vec![MismatchKind::Changed]);
        assert_eq!(c.items, 7);
    }

    #[test]
    fn changed_heading_differs() {
        let ours = GOLDEN.replace("### rr with three servers", "### rr with 3 servers");
        assert_eq!(kinds(&exact(GOLDEN, &ours)), vec![MismatchKind::Changed]);
    }

    #[test]
    fn header_size_rule_is_needed_and_sufficient() {
        let ours = GOLDEN.replace("(size=4096)", "(size=1048576)");
        assert_eq!(exact(GOLDEN, &ours).mismatches.len(), 2);
        let c = with(&[Rule::HeaderSize], GOLDEN, &ours);
        assert!(c.matches(), "{c}");
        assert_eq!(c.allowed.get(&Rule::HeaderSize), Some(&2));
        let other_version = ours.replace("version 1.2.1", "version 1.3.0");
        assert_eq!(with(&[Rule::HeaderSize], GOLDEN, &other_version).mismatches.len(), 2);
    }

    #[test]
    fn conn_expiry_rule() {
        let ours = GOLDEN.replace("01:58  TIME_WAIT", "01:59  TIME_WAIT");
        assert!(!exact(GOLDEN, &ours).matches());
        assert!(with(&[Rule::ConnExpiry1s], GOLDEN, &ours).matches());
        let two = GOLDEN.replace("01:58  TIME_WAIT", "02:00  TIME_WAIT");
        assert!(!with(&[Rule::ConnExpiry1s], GOLDEN, &two).matches());
        let state = GOLDEN.replace("01:58  TIME_WAIT  ", "01:59  FIN_WAIT   ");
        assert!(!with(&[Rule::ConnExpiry1s], GOLDEN, &state).matches());
    }

    fn permuted() -> String {
        let a = "TCP 01:58  TIME_WAIT   198.51.100.2:40001 203.0.113.10:80    192.0.2.13:80\n";
        let c = "TCP 01:56  TIME_WAIT   198.51.100.2:40003 203.0.113.10:80    192.0.2.11:80\n";
        GOLDEN.replace(a, "@").replace(c, a).replace('@', c)
    }

    #[test]
    fn conn_order_rule_accepts_permutations() {
        let ours = permuted();
        assert_ne!(ours, GOLDEN);
        assert!(!exact(GOLDEN, &ours).matches());
        let c = with(&[Rule::ConnOrder], GOLDEN, &ours);
        assert!(c.matches(), "{c}");
        assert_eq!(c.allowed.get(&Rule::ConnOrder), Some(&2), "first and last swapped");
        // Together with the expiry rule: permuted and a second off.
        let both = ours.replace("01:57", "01:58").replace("01:56", "01:55");
        assert!(!with(&[Rule::ConnOrder], GOLDEN, &both).matches());
        assert!(with(&[Rule::ConnOrder, Rule::ConnExpiry1s], GOLDEN, &both).matches());
    }

    #[test]
    fn conn_order_rule_rejects_a_missing_or_duplicated_entry() {
        let missing = permuted()
            .replace("TCP 01:57  TIME_WAIT   198.51.100.2:40002 203.0.113.10:80    192.0.2.12:80\n", "");
        let c = with(&Rule::ALL, GOLDEN, &missing);
        assert_eq!(kinds(&c), vec![MismatchKind::Changed]);
        let changed: Vec<&DiffLine> = c.mismatches[0].lines.iter().filter(|l| l.is_change()).collect();
        assert_eq!(changed.len(), 1, "only the missing entry: {changed:?}");
        let first = "TCP 01:58  TIME_WAIT   198.51.100.2:40001 203.0.113.10:80    192.0.2.13:80\n";
        let third = "TCP 01:56  TIME_WAIT   198.51.100.2:40003 203.0.113.10:80    192.0.2.11:80\n";
        let dup = GOLDEN.replace(third, first);
        assert!(!with(&Rule::ALL, GOLDEN, &dup).matches());
    }

    #[test]
    fn conn_order_shows_a_changed_entry_next_to_its_golden_one() {
        let ours = permuted().replace("01:57  TIME_WAIT  ", "01:57  FIN_WAIT   ");
        let c = with(&[Rule::ConnOrder], GOLDEN, &ours);
        assert_eq!(kinds(&c), vec![MismatchKind::Changed]);
        assert!(c.mismatches[0].reordered);
        let changed: Vec<&DiffLine> = c.mismatches[0].lines.iter().filter(|l| l.is_change()).collect();
        assert!(
            matches!(changed[..], [DiffLine::Golden { line: 17, .. }, DiffLine::Ours { line: 17, .. }]),
            "{changed:?}"
        );
        let at = c.mismatches[0].lines.iter().position(DiffLine::is_change).unwrap();
        assert!(c.mismatches[0].lines[at + 1].is_change(), "adjacent");
    }

    #[test]
    fn kernel_without_twos_rule() {
        const G: &str = "$ ipvsadm -A -t 203.0.113.10:80 -s twos\n--- stderr\nScheduler or persistence engine not found\n[exit 255]\n\
                         $ ipvsadm -L -n\nTCP  203.0.113.11:80 rr\n  -> 192.0.2.11:80 x\n[exit 0]\n";
        let ours = "$ ipvsadm -A -t 203.0.113.10:80 -s twos\n[exit 0]\n\
                    $ ipvsadm -L -n\nTCP  203.0.113.10:80 twos\n  -> 192.0.2.12:80 y\nTCP  203.0.113.11:80 rr\n  -> 192.0.2.11:80 x\n[exit 0]\n";
        assert_eq!(exact(G, ours).mismatches.len(), 2);
        let c = with(&[Rule::KernelWithoutTwos], G, ours);
        assert!(c.matches(), "{c}");
        assert_eq!(c.allowed.get(&Rule::KernelWithoutTwos), Some(&3));
        // Only twos: another scheduler refused by the kernel and accepted by ours still differs.
        let rr = G.replace("-s twos", "-s rr");
        assert!(!with(&[Rule::KernelWithoutTwos], &rr, &ours.replace("-s twos", "-s rr")).matches());
        // Only the kernel's exact refusal, and only a silent success in ours.
        let other = G.replace("Scheduler or persistence engine not found", "Service already exists");
        assert!(!with(&[Rule::KernelWithoutTwos], &other, ours).matches());
        let noisy = ours.replace("twos\n[exit 0]", "twos\n--- stderr\noops\n[exit 0]");
        assert!(!with(&[Rule::KernelWithoutTwos], G, &noisy).matches());
        // A changed line of another service is still a difference.
        let changed = ours.replace("192.0.2.11:80 x", "192.0.2.11:80 z");
        assert!(!with(&[Rule::KernelWithoutTwos], G, &changed).matches());
    }

    #[test]
    fn rate_values_rule() {
        let ours = GOLDEN
            .replace("3       18       12     1080     1383", "3       19       12     1140     1490")
            .replace("(size=4096)", "(size=65536)");
        assert!(!with(&[Rule::HeaderSize], GOLDEN, &ours).matches());
        let c = with(&[Rule::HeaderSize, Rule::RateValues], GOLDEN, &ours);
        assert!(c.matches(), "{c}");
        assert_eq!(c.allowed.get(&Rule::RateValues), Some(&2));
        let service = ours.replace(
            "TCP  203.0.113.10:80                     3",
            "TCP  203.0.113.11:80                     3",
        );
        assert!(!with(&[Rule::HeaderSize, Rule::RateValues], GOLDEN, &service).matches());
    }

    #[test]
    fn rules_are_scoped_to_scenarios() {
        let ours = GOLDEN.replace("(size=4096)", "(size=1)");
        let allow = AllowList::parse("header-size other # test\n", "test").unwrap();
        assert!(!compare("t", GOLDEN, &ours, &allow).matches());
        assert!(compare("other", GOLDEN, &ours, &allow).matches());
    }

    #[test]
    fn lcs_finds_the_longest_match() {
        let a = b"abcbdab";
        let b = b"bdcaba";
        let pairs = lcs(a.len(), b.len(), |i, j| a[i] == b[j]);
        assert_eq!(pairs.len(), 4);
        assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        assert!(pairs.iter().all(|&(i, j)| a[i] == b[j]));
        assert!(lcs(0, 3, |_, _| true).is_empty());
    }
}
