//! Low-level command-line scanning, one-to-one with ipvsadm's popt option table.
//!
//! ipvsadm hands its table to popt and then acts on each option as popt returns it, failing at
//! the first problem. So scanning is lazy: [`Scanner::next_opt`] yields one option at a time and
//! the caller validates it before asking for the next. The popt behaviours that show through in
//! ipvsadm's output are reproduced here:
//!
//! * non-option words are collected as leftovers wherever they appear (popt permutes), `--`
//!   makes every later word a leftover, a lone `-` is a leftover;
//! * `--name=value`; a single dash never names a long option (no entry has `ONEDASH`), so
//!   `-list` is the bundle `-l -i -s -t`;
//! * short bundles (`-Ln`), where an option taking an argument swallows the rest of the bundle
//!   (`-tVIP:80`, an `=` right after the letter is skipped) or else the next word, even one
//!   starting with `-` (`-w -1` is weight "-1");
//! * `-p`'s optional argument is taken from the next word only if that word does not start with
//!   `-`, and is absent at the end of the line;
//! * long names match exactly (no abbreviations); the first table entry wins (`--list` is `-L`);
//! * `poptBadOption` names the last word consumed, which for an option whose argument came from
//!   the next word is that argument.

/// Every entry of ipvsadm's option table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opt {
    AddService,
    EditService,
    DeleteService,
    Clear,
    /// `-L` / `--list`.
    List,
    /// `-l`: a separate entry in ipvsadm's table, same meaning.
    ListLower,
    Zero,
    AddServer,
    EditServer,
    DeleteServer,
    Set,
    Help,
    Version,
    Restore,
    Save,
    StartDaemon,
    StopDaemon,
    TcpService,
    UdpService,
    SctpService,
    FwmarkService,
    Scheduler,
    Persistent,
    Netmask,
    RealServer,
    Masquerading,
    Ipip,
    Gatewaying,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    McastInterface,
    SyncId,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ipv6,
    Ops,
    Pe,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    None,
    Required,
    /// popt's `POPT_ARGFLAG_OPTIONAL` (only `-p`).
    Optional,
}

/// (long name, short name, argument, option), in ipvsadm's table order.
const TABLE: &[(&str, Option<char>, ArgKind, Opt)] = {
    use ArgKind::*;
    use Opt::*;
    &[
        ("add-service", Some('A'), None, AddService),
        ("edit-service", Some('E'), None, EditService),
        ("delete-service", Some('D'), None, DeleteService),
        ("clear", Some('C'), None, Clear),
        ("list", Some('L'), None, List),
        ("list", Some('l'), None, ListLower),
        ("zero", Some('Z'), None, Zero),
        ("add-server", Some('a'), None, AddServer),
        ("edit-server", Some('e'), None, EditServer),
        ("delete-server", Some('d'), None, DeleteServer),
        ("set", Option::None, None, Set),
        ("help", Some('h'), None, Help),
        ("version", Some('v'), None, Version),
        ("restore", Some('R'), None, Restore),
        ("save", Some('S'), None, Save),
        ("start-daemon", Option::None, Required, StartDaemon),
        ("stop-daemon", Option::None, Required, StopDaemon),
        ("tcp-service", Some('t'), Required, TcpService),
        ("udp-service", Some('u'), Required, UdpService),
        ("sctp-service", Option::None, Required, SctpService),
        ("fwmark-service", Some('f'), Required, FwmarkService),
        ("scheduler", Some('s'), Required, Scheduler),
        ("persistent", Some('p'), Optional, Persistent),
        ("netmask", Some('M'), Required, Netmask),
        ("real-server", Some('r'), Required, RealServer),
        ("masquerading", Some('m'), None, Masquerading),
        ("ipip", Some('i'), None, Ipip),
        ("gatewaying", Some('g'), None, Gatewaying),
        ("weight", Some('w'), Required, Weight),
        ("u-threshold", Some('x'), Required, UThreshold),
        ("l-threshold", Some('y'), Required, LThreshold),
        ("numeric", Some('n'), None, Numeric),
        ("connection", Some('c'), None, Connection),
        ("mcast-interface", Option::None, Required, McastInterface),
        ("syncid", Option::None, Required, SyncId),
        ("timeout", Option::None, None, Timeout),
        ("daemon", Option::None, None, Daemon),
        ("stats", Option::None, None, Stats),
        ("rate", Option::None, None, Rate),
        ("thresholds", Option::None, None, Thresholds),
        ("persistent-conn", Option::None, None, PersistentConn),
        ("nosort", Option::None, None, NoSort),
        ("sort", Option::None, None, Sort),
        ("exact", Some('X'), None, Exact),
        ("ipv6", Some('6'), None, Ipv6),
        ("ops", Some('o'), None, Ops),
        ("pe", Option::None, Required, Pe),
        ("sched-flags", Some('b'), Required, SchedFlags),
        ("mcast-group", Option::None, Required, McastGroup),
        ("mcast-port", Option::None, Required, McastPort),
        ("mcast-ttl", Option::None, Required, McastTtl),
        ("sync-maxlen", Option::None, Required, SyncMaxlen),
        ("tun-info", Option::None, None, TunInfo),
        ("tun-type", Option::None, Required, TunType),
        ("tun-port", Option::None, Required, TunPort),
        ("tun-nocsum", Option::None, None, TunNocsum),
        ("tun-csum", Option::None, None, TunCsum),
        ("tun-remcsum", Option::None, None, TunRemcsum),
    ]
};

/// popt's error codes that ipvsadm can surface, with `poptStrerror`'s text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoptError {
    BadOpt,
    NoArg,
    UnwantedArg,
}

impl PoptError {
    pub fn text(self) -> &'static str {
        match self {
            PoptError::BadOpt => "unknown option",
            PoptError::NoArg => "missing argument",
            PoptError::UnwantedArg => "option does not take an argument",
        }
    }
}

/// One option as popt returns it; `arg` is `None` for flags and for an absent optional value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub opt: Opt,
    pub arg: Option<String>,
}

/// A lazy popt-style scanner over `argv` (element 0 is the program name).
pub struct Scanner<'a> {
    argv: &'a [String],
    /// Index of the next word to look at.
    next: usize,
    /// Rest of a short-option bundle still to be scanned: (word index, byte offset).
    bundle: Option<(usize, usize)>,
    /// After `--`, everything is a leftover.
    rest_leftover: bool,
    leftovers: Vec<String>,
}

impl<'a> Scanner<'a> {
    pub fn new(argv: &'a [String]) -> Self {
        Scanner { argv, next: 1, bundle: None, rest_leftover: false, leftovers: Vec::new() }
    }

    /// `poptBadOption(ctx, POPT_BADOPTION_NOALIAS)`: the last word consumed.
    pub fn bad_option(&self) -> &str {
        self.argv.get(self.next.wrapping_sub(1)).map(String::as_str).unwrap_or("")
    }

    /// `poptGetArg`: the leftover words, in order, one at a time.
    pub fn take_leftover(&mut self) -> Option<String> {
        if self.leftovers.is_empty() {
            None
        } else {
            Some(self.leftovers.remove(0))
        }
    }

    /// `poptGetNextOpt`: `None` when the words are exhausted (popt's -1).
    pub fn next_opt(&mut self) -> Option<Result<Found, PoptError>> {
        loop {
            if let Some((word, pos)) = self.bundle.take() {
                return Some(self.short_option(word, pos));
            }
            if self.next >= self.argv.len() {
                // The remaining leftovers are still waiting in `leftovers`.
                return None;
            }
            let idx = self.next;
            self.next += 1;
            let word = &self.argv[idx];
            if self.rest_leftover || !word.starts_with('-') || word == "-" {
                self.leftovers.push(word.clone());
                continue;
            }
            if word == "--" {
                self.rest_leftover = true;
                continue;
            }
            if let Some(long) = word.strip_prefix("--") {
                return Some(self.long_option(long));
            }
            // A single dash: popt tries it as a long name only for ONEDASH entries, of which
            // ipvsadm has none, so it is always a bundle of short options.
            return Some(self.short_option(idx, 1));
        }
    }

    fn long_option(&mut self, body: &str) -> Result<Found, PoptError> {
        let (name, inline) = match body.find('=') {
            Some(eq) => (&body[..eq], Some(body[eq + 1..].to_string())),
            None => (body, None),
        };
        let &(_, _, kind, opt) =
            TABLE.iter().find(|(long, ..)| *long == name).ok_or(PoptError::BadOpt)?;
        match kind {
            ArgKind::None if inline.is_some() => Err(PoptError::UnwantedArg),
            ArgKind::None => Ok(Found { opt, arg: None }),
            _ if inline.is_some() => Ok(Found { opt, arg: inline }),
            _ => self.argument_from_next_word(opt, kind),
        }
    }

    fn short_option(&mut self, word: usize, pos: usize) -> Result<Found, PoptError> {
        let text = &self.argv[word];
        let c = text[pos..].chars().next().expect("bundle position inside the word");
        let after = pos + c.len_utf8();
        let &(_, _, kind, opt) =
            TABLE.iter().find(|(_, short, ..)| *short == Some(c)).ok_or(PoptError::BadOpt)?;
        let rest = &text[after..];
        match kind {
            ArgKind::None => {
                if rest.starts_with('=') {
                    return Err(PoptError::UnwantedArg);
                }
                if !rest.is_empty() {
                    self.bundle = Some((word, after));
                }
                Ok(Found { opt, arg: None })
            }
            _ if !rest.is_empty() => {
                let value = rest.strip_prefix('=').unwrap_or(rest);
                Ok(Found { opt, arg: Some(value.to_string()) })
            }
            _ => self.argument_from_next_word(opt, kind),
        }
    }

    fn argument_from_next_word(&mut self, opt: Opt, kind: ArgKind) -> Result<Found, PoptError> {
        match self.argv.get(self.next) {
            None if kind == ArgKind::Optional => Ok(Found { opt, arg: None }),
            None => Err(PoptError::NoArg),
            Some(w) if kind == ArgKind::Optional && w.starts_with('-') => {
                Ok(Found { opt, arg: None })
            }
            Some(w) => {
                let value = w.clone();
                self.next += 1;
                Ok(Found { opt, arg: Some(value) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        std::iter::once("ipvsadm").chain(words.iter().copied()).map(String::from).collect()
    }

    fn scan(words: &[&str]) -> (Vec<Result<Found, PoptError>>, Vec<String>) {
        let v = argv(words);
        let mut s = Scanner::new(&v);
        let mut out = Vec::new();
        while let Some(r) = s.next_opt() {
            let stop = r.is_err();
            out.push(r);
            if stop {
                break;
            }
        }
        let mut left = Vec::new();
        while let Some(l) = s.take_leftover() {
            left.push(l);
        }
        (out, left)
    }

    fn f(opt: Opt, arg: Option<&str>) -> Result<Found, PoptError> {
        Ok(Found { opt, arg: arg.map(String::from) })
    }

    #[test]
    fn bundles_and_attached_arguments() {
        let (o, _) = scan(&["-Ln"]);
        assert_eq!(o, vec![f(Opt::List, None), f(Opt::Numeric, None)]);
        let (o, _) = scan(&["-At10.0.0.1:80", "-s=rr"]);
        assert_eq!(
            o,
            vec![f(Opt::AddService, None), f(Opt::TcpService, Some("10.0.0.1:80")), f(Opt::Scheduler, Some("rr"))]
        );
        let (o, _) = scan(&["-a", "-w", "-1"]);
        assert_eq!(o, vec![f(Opt::AddServer, None), f(Opt::Weight, Some("-1"))]);
    }

    #[test]
    fn optional_persistent_argument() {
        let (o, _) = scan(&["-A", "-p", "-s", "rr"]);
        assert_eq!(o[1], f(Opt::Persistent, None));
        let (o, _) = scan(&["-A", "-p", "600"]);
        assert_eq!(o[1], f(Opt::Persistent, Some("600")));
        let (o, _) = scan(&["-A", "-p"]);
        assert_eq!(o[1], f(Opt::Persistent, None));
        let (o, _) = scan(&["-A", "--persistent=30"]);
        assert_eq!(o[1], f(Opt::Persistent, Some("30")));
    }

    #[test]
    fn long_options_and_errors() {
        let (o, _) = scan(&["--list", "--numeric"]);
        assert_eq!(o, vec![f(Opt::List, None), f(Opt::Numeric, None)]);
        let (o, _) = scan(&["--foo"]);
        assert_eq!(o, vec![Err(PoptError::BadOpt)]);
        let (o, _) = scan(&["--list=x"]);
        assert_eq!(o, vec![Err(PoptError::UnwantedArg)]);
        let (o, _) = scan(&["-A", "-t"]);
        assert_eq!(o[1], Err(PoptError::NoArg));
        let (o, _) = scan(&["--lis"]);
        assert_eq!(o, vec![Err(PoptError::BadOpt)]);
    }

    #[test]
    fn leftovers_are_permuted_out() {
        let (o, l) = scan(&["--set", "1", "-n", "2", "--", "-3"]);
        assert_eq!(o, vec![f(Opt::Set, None), f(Opt::Numeric, None)]);
        assert_eq!(l, vec!["1", "2", "-3"]);
    }

    #[test]
    fn bad_option_names_last_consumed_word() {
        let v = argv(&["-A", "--start-daemon", "master"]);
        let mut s = Scanner::new(&v);
        s.next_opt();
        s.next_opt();
        assert_eq!(s.bad_option(), "master");
    }
}
