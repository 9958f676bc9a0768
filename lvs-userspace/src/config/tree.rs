//! YAML text to a small tree whose nodes remember where they were written.
//!
//! serde-based loaders lose positions once a value is deserialized, but the semantic checks
//! (duplicate services, address families, port rules) must point at the offending node. So the
//! file is read as saphyr-parser events, and this module assembles them into [`Node`]s carrying
//! 1-based locations. Only what a configuration file needs is kept: scalars (with whether they
//! were quoted), sequences and mappings with string keys. Aliases are expanded; tags and
//! multi-document streams are refused rather than half-supported.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};

use super::{ConfigError, Location};

/// Deeper nesting than this is certainly not a configuration, and the tree is built
/// recursively, so it also protects the stack.
const MAX_DEPTH: usize = 64;
/// Alias expansion copies nodes; this bounds the copies ("billion laughs").
const MAX_ALIAS_NODES: usize = 100_000;

/// A YAML node and where it starts.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    /// What was written.
    pub kind: Kind,
    /// Start of the node (for a block mapping: its first key).
    pub loc: Location,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// An empty value, `~` or `null`.
    Null,
    /// Any other scalar, as text.
    Scalar {
        /// The scalar's value, after unquoting and escape processing.
        text: String,
        /// False for quoted and block (`|`, `>`) scalars, which YAML always reads as text; the
        /// distinction lets `port: "80"` be refused as text where a number is expected.
        plain: bool,
    },
    /// A sequence (list).
    Seq(Vec<Node>),
    /// A mapping, in document order, keys unique.
    Map(Vec<Entry>),
}

/// One `key: value` pair of a mapping.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The key's text.
    pub key: String,
    /// Where the key is written.
    pub key_loc: Location,
    /// The value.
    pub value: Node,
}

impl Entry {
    /// Where to point at the value: an empty value has no text of its own, so its key.
    pub fn value_loc(&self) -> Location {
        match self.value.kind {
            Kind::Null => self.key_loc,
            _ => self.value.loc,
        }
    }
}

impl Node {
    /// The node as an operator would name it in "expected X, found Y".
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Null => "nothing".to_string(),
            Kind::Scalar { text, plain: true } => format!("'{text}'"),
            Kind::Scalar { text, plain: false } => format!("quoted text \"{text}\""),
            Kind::Seq(_) => "a list".to_string(),
            Kind::Map(_) => "a mapping".to_string(),
        }
    }
}

fn location(span: &Span) -> Location {
    Location {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

/// Reads the single document of `text`; `Ok(None)` when there is none (empty file, only
/// comments).
pub(crate) fn parse(text: &str, source: &str) -> Result<Option<Node>, ConfigError> {
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        source,
        anchors: HashMap::new(),
        alias_nodes: 0,
    };
    // StreamStart, then a DocumentStart or the end of the stream.
    b.next()?;
    let (ev, span) = b.next()?;
    match ev {
        Event::StreamEnd => return Ok(None),
        Event::DocumentStart(_) => {}
        _ => return Err(b.err(location(&span), "unexpected YAML structure at the start")),
    }
    let (ev, span) = b.next()?;
    let root = b.node(ev, span, 0)?;
    // DocumentEnd, then anything but the end of the stream is a second document.
    b.next()?;
    let (ev, span) = b.next()?;
    match ev {
        Event::StreamEnd => Ok(Some(root)),
        _ => Err(b
            .err(
                location(&span),
                "a second YAML document is not allowed here",
            )
            .with_hint("a configuration is one document; remove the extra '---'")),
    }
}

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    source: &'a str,
    /// Completed anchored nodes, by anchor id.
    anchors: HashMap<usize, Node>,
    alias_nodes: usize,
}

impl<'a> Builder<'a> {
    fn err(&self, loc: Location, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.source, loc, message)
    }

    fn next(&mut self) -> Result<(Event<'a>, Span), ConfigError> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(self.syntax(&e)),
            // The parser yields StreamEnd before running dry; running dry is a parser bug, but
            // still not a reason to panic.
            None => Err(ConfigError::file(
                self.source,
                "unexpected end of the YAML stream",
            )),
        }
    }

    fn syntax(&self, e: &ScanError) -> ConfigError {
        let m = e.marker();
        let err = self.err(
            Location {
                line: m.line(),
                column: m.col() + 1,
            },
            format!("YAML syntax error: {}", e.info()),
        );
        // The parser's wording is precise but terse; the commonest causes, in plain words.
        let info = e.info();
        if info.contains("tab") {
            err.with_hint("indent with spaces; YAML does not allow tabs for indentation")
        } else if info.contains("did not find expected") {
            err.with_hint("check the indentation of this line against the lines above it")
        } else {
            err
        }
    }

    fn node(&mut self, ev: Event<'a>, span: Span, depth: usize) -> Result<Node, ConfigError> {
        let loc = location(&span);
        if depth > MAX_DEPTH {
            return Err(self.err(loc, format!("nested more than {MAX_DEPTH} levels deep")));
        }
        let (node, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                if let Some(tag) = tag {
                    return Err(self.tag_err(loc, &tag));
                }
                let plain = style == ScalarStyle::Plain;
                let kind = if plain && matches!(&*text, "" | "~" | "null" | "Null" | "NULL") {
                    Kind::Null
                } else {
                    Kind::Scalar {
                        text: text.into_owned(),
                        plain,
                    }
                };
                (Node { kind, loc }, anchor)
            }
            Event::SequenceStart(anchor, tag) => {
                if let Some(tag) = tag {
                    return Err(self.tag_err(loc, &tag));
                }
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if ev == Event::SequenceEnd {
                        break;
                    }
                    items.push(self.node(ev, span, depth + 1)?);
                }
                (
                    Node {
                        kind: Kind::Seq(items),
                        loc,
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, tag) => {
                if let Some(tag) = tag {
                    return Err(self.tag_err(loc, &tag));
                }
                let mut entries: Vec<Entry> = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if ev == Event::MappingEnd {
                        break;
                    }
                    let key = self.node(ev, span, depth + 1)?;
                    let key_text = match key.kind {
                        Kind::Scalar { text, .. } => text,
                        Kind::Null => {
                            return Err(self.err(key.loc, "a mapping key is empty"));
                        }
                        _ => {
                            return Err(self.err(
                                key.loc,
                                format!("a mapping key must be a name, found {}", key.describe()),
                            ));
                        }
                    };
                    if let Some(first) = entries.iter().find(|e| e.key == key_text) {
                        return Err(self
                            .err(key.loc, format!("key '{key_text}' is given twice"))
                            .with_hint(format!("first given at line {}", first.key_loc.line)));
                    }
                    let (ev, span) = self.next()?;
                    let value = self.node(ev, span, depth + 1)?;
                    entries.push(Entry {
                        key: key_text,
                        key_loc: key.loc,
                        value,
                    });
                }
                (
                    Node {
                        kind: Kind::Map(entries),
                        loc,
                    },
                    anchor,
                )
            }
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id) else {
                    // The parser resolves names to ids and rejects unknown ones; an id without a
                    // node is an alias inside its own anchor, which YAML forbids too.
                    return Err(self.err(loc, "an alias refers to a node that is not complete"));
                };
                // A copy adds the anchored node's height below the alias; without this check
                // aliases nesting aliases would build trees deep enough to overflow the stack.
                if depth + height(target) - 1 > MAX_DEPTH {
                    return Err(self.err(loc, format!("nested more than {MAX_DEPTH} levels deep")));
                }
                self.alias_nodes += count(target);
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(self.err(loc, "aliases expand to too many nodes"));
                }
                let mut copy = target.clone();
                // Errors inside the copy point at the anchored original, which is where the
                // operator would fix them; the alias itself is located by its own start.
                copy.loc = loc;
                return Ok(copy);
            }
            other => {
                return Err(self.err(loc, format!("unexpected YAML structure ({other:?})")));
            }
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn tag_err(&self, loc: Location, tag: &Tag) -> ConfigError {
        let tag = if tag.is_yaml_core_schema() {
            format!("!!{}", tag.suffix)
        } else {
            tag.to_string()
        };
        self.err(loc, format!("YAML tags such as '{tag}' are not supported"))
            .with_hint("write the value without a tag")
    }
}

fn count(n: &Node) -> usize {
    1 + match &n.kind {
        Kind::Seq(items) => items.iter().map(count).sum(),
        Kind::Map(entries) => entries.iter().map(|e| 1 + count(&e.value)).sum(),
        _ => 0,
    }
}

fn height(n: &Node) -> usize {
    1 + match &n.kind {
        Kind::Seq(items) => items.iter().map(height).max().unwrap_or(0),
        Kind::Map(entries) => entries.iter().map(|e| height(&e.value)).max().unwrap_or(0),
        _ => 0,
    }
}
