//! Reads a scenario transcript into items: headings, records and command blocks.
//!
//! The format (written by the scenario scripts' recorder):
//!
//! ```text
//! ### title                 a heading
//! $ ipvsadm -L -n           a command, then its stdout verbatim,
//! --- stderr                optionally this marker and its stderr,
//! [exit 0]                  and always its exit code
//! conn 1 ... -> rs3         any other line outside a block: a record
//! # note                    a comment, ignored
//! ```
//!
//! Parsing never fails: a transcript cut short (the scenario died) still has to be compared, so
//! a block that reaches the end of the file simply has no exit code, and the comparison shows
//! the missing `[exit N]` line.

/// One unit of comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// `### title`, without the `### `.
    Heading(String),
    /// A line the scenario wrote itself (which real server answered, ...).
    Record(String),
    Command(Command),
}

/// A `$ command` line and everything recorded up to its `[exit N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The command line without the `$ `.
    pub line: String,
    pub stdout: Vec<String>,
    /// `Some` when a `--- stderr` marker was present (even if nothing followed it).
    pub stderr: Option<Vec<String>>,
    /// `None` when the file ended before the `[exit N]` line.
    pub exit: Option<u32>,
}

/// Which part of a command block a body line belongs to; lines only ever correspond to lines of
/// the same part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Stdout,
    StderrMarker,
    Stderr,
    Exit,
}

pub const STDERR_MARKER: &str = "--- stderr";

/// A body line of a command block with its 1-based line number in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyLine {
    pub part: Part,
    pub text: String,
    pub line: usize,
}

impl Command {
    /// The lines after the `$` line, as they appear in the file. `start` is the `$` line's number.
    pub fn body(&self, start: usize) -> Vec<BodyLine> {
        let mut out = Vec::new();
        let mut push = |part, text: &str| {
            let line = start + 1 + out.len();
            out.push(BodyLine { part, text: text.to_string(), line });
        };
        for l in &self.stdout {
            push(Part::Stdout, l);
        }
        if let Some(stderr) = &self.stderr {
            push(Part::StderrMarker, STDERR_MARKER);
            for l in stderr {
                push(Part::Stderr, l);
            }
        }
        if let Some(code) = self.exit {
            push(Part::Exit, &format!("[exit {code}]"));
        }
        out
    }
}

/// An item and the 1-based number of its first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub line: usize,
    pub item: Item,
}

/// Splits into lines on `\n` only: a stray `\r` is content and must show up as a difference.
fn lines(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    text.strip_suffix('\n').unwrap_or(text).split('\n').collect()
}

fn exit_code(line: &str) -> Option<u32> {
    let digits = line.strip_prefix("[exit ")?.strip_suffix(']')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn is_comment(line: &str) -> bool {
    line == "#" || line.starts_with("# ")
}

/// Parses a whole transcript. Comments are dropped only outside command blocks: inside one,
/// a `# ...` line is the command's output.
pub fn parse(text: &str) -> Vec<Located> {
    let mut items = Vec::new();
    // The open command block and its line number.
    let mut open: Option<(usize, Command)> = None;
    for (idx, l) in lines(text).into_iter().enumerate() {
        let n = idx + 1;
        if let Some((start, mut cmd)) = open.take() {
            if let Some(code) = exit_code(l) {
                cmd.exit = Some(code);
                items.push(Located { line: start, item: Item::Command(cmd) });
            } else {
                match &mut cmd.stderr {
                    Some(stderr) => stderr.push(l.to_string()),
                    None if l == STDERR_MARKER => cmd.stderr = Some(Vec::new()),
                    None => cmd.stdout.push(l.to_string()),
                }
                open = Some((start, cmd));
            }
            continue;
        }
        if let Some(cmd) = l.strip_prefix("$ ") {
            let cmd = Command { line: cmd.to_string(), stdout: Vec::new(), stderr: None, exit: None };
            open = Some((n, cmd));
        } else if let Some(title) = l.strip_prefix("### ") {
            items.push(Located { line: n, item: Item::Heading(title.to_string()) });
        } else if !is_comment(l) {
            items.push(Located { line: n, item: Item::Record(l.to_string()) });
        }
    }
    if let Some((start, cmd)) = open {
        items.push(Located { line: start, item: Item::Command(cmd) });
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
### rr with three servers
# a comment
$ ipvsadm -A -t 203.0.113.10:80 -s rr
[exit 0]
conn 1 198.51.100.2:40001 -> rs3
$ ipvsadm -L -n
IP Virtual Server version 1.2.1 (size=4096)
# not a comment here
  -> 192.0.2.13:80                Masq    1      0          1         
[exit 0]
$ ipvsadm -a -t 203.0.113.10:80 -r 192.0.2.99:80 -x 10 -y 20
--- stderr
Numerical result out of range
[exit 255]
";

    #[test]
    fn parses_all_item_kinds_with_line_numbers() {
        let items = parse(SAMPLE);
        let lines: Vec<usize> = items.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![1, 3, 5, 6, 11]);
        assert_eq!(items[0].item, Item::Heading("rr with three servers".into()));
        assert_eq!(items[2].item, Item::Record("conn 1 198.51.100.2:40001 -> rs3".into()));
        let Item::Command(list) = &items[3].item else { panic!("not a command") };
        assert_eq!(list.line, "ipvsadm -L -n");
        assert_eq!(list.stdout.len(), 3);
        assert_eq!(list.stdout[1], "# not a comment here");
        assert!(list.stdout[2].ends_with("1         "), "trailing spaces kept");
        assert_eq!(list.stderr, None);
        assert_eq!(list.exit, Some(0));
        let Item::Command(err) = &items[4].item else { panic!("not a command") };
        assert_eq!(err.stdout, Vec::<String>::new());
        assert_eq!(err.stderr, Some(vec!["Numerical result out of range".to_string()]));
        assert_eq!(err.exit, Some(255));
    }

    #[test]
    fn body_reproduces_the_file_lines() {
        let items = parse(SAMPLE);
        let file: Vec<&str> = SAMPLE.lines().collect();
        for it in &items {
            if let Item::Command(c) = &it.item {
                for b in c.body(it.line) {
                    assert_eq!(file[b.line - 1], b.text);
                }
            }
        }
    }

    #[test]
    fn block_cut_short_has_no_exit() {
        let items = parse("$ ipvsadm -L -n\nIP Virtual Server version 1.2.1 (size=4096)\n");
        let Item::Command(c) = &items[0].item else { panic!("not a command") };
        assert_eq!(c.exit, None);
        assert_eq!(c.stdout.len(), 1);
    }

    #[test]
    fn carriage_return_is_content() {
        let items = parse("conn 1\r\n");
        assert_eq!(items[0].item, Item::Record("conn 1\r".into()));
    }

    #[test]
    fn empty_transcript_has_no_items() {
        assert!(parse("").is_empty());
        assert_eq!(parse("\n").len(), 1, "one empty record line");
    }
}
