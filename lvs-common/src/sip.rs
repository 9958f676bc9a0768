//! The sip persistence engine (`ipvsadm --pe sip`, the kernel's `ip_vs_pe_sip`): the Call-ID
//! of a SIP datagram, which a persistent UDP service adds to its template key so that every
//! datagram of one call from one client network reaches the same real server, whatever its
//! source port.
//!
//! The kernel finds the Call-ID with netfilter's SIP helper (`ct_sip_get_header` with the
//! `Call-Id`/`i` header, `callid_len`, then `get_callid`'s checks). [`Scan`] is the same search
//! written as a machine that takes one byte at a time, so that the dataplane runs it under
//! `bpf_loop` (the verifier checks one step, not every byte) and the host tests run the very
//! same code through [`find_callid`]. What it implements, as the kernel does:
//! - a header is looked for at the start of a line only: after CR, LF or CRLF, so never on the
//!   request line; a line starting with a space or tab (a continuation) is skipped;
//! - the name is `Call-ID` (any case, and anything may follow it) or the compact `i` followed
//!   by a character that is not a letter; then optional whitespace (continuation lines
//!   included), a colon, optional whitespace, and the value: a run of "word" characters,
//!   optionally `@` and a second run;
//! - the first line whose name matches decides: a missing colon means no Call-ID at all; an
//!   empty value makes the search go on after it; a value longer than
//!   [`PEDATA_MAXLEN`] (255) bytes, one running to the end of the data or one not followed
//!   by CR or LF means no Call-ID.
//!
//! Differences: only the first [`SCAN_MAX`] bytes of the UDP payload are looked at (a Call-ID
//! further in, or cut by that limit, counts as missing); after a second empty Call-ID value
//! the kernel resumes its search at a wrong offset (it adds an absolute offset to a relative
//! one), this search simply goes on.

/// How many bytes of the UDP payload are searched: a power of two (the dataplane masks its
/// index with `SCAN_MAX - 1`), larger than the headers before Call-ID in ordinary requests
/// (request line, a few Via, From, To: a few hundred bytes).
pub const SCAN_MAX: usize = 1024;

/// `IP_VS_PEDATA_MAXLEN`: a longer Call-ID is refused.
pub const PEDATA_MAXLEN: usize = 255;

/// Room for a Call-ID: [`PEDATA_MAXLEN`] bytes and one spare, a power of two for masking.
pub const CALLID_ROOM: usize = 256;

/// The Call-ID of a SIP template (value of `SIP_CALLIDS`, same key as its `TEMPLATES` entry):
/// what `ipvsadm -L -c --persistent-conn` shows as `pe_data`. 264 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallId {
    /// Bytes used in `data`.
    pub len: u32,
    /// [`Scan::hash`] of the value, as folded into the template key.
    pub hash: u32,
    pub data: [u8; CALLID_ROOM],
}

impl Default for CallId {
    fn default() -> Self {
        CallId { len: 0, hash: 0, data: [0; CALLID_ROOM] }
    }
}

const _: () = assert!(core::mem::size_of::<CallId>() == 264);

impl CallId {
    /// The Call-ID bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..(self.len as usize).min(CALLID_ROOM)]
    }
}

/// [`Scan::result`] values.
pub const SCANNING: u32 = 0;
pub const FOUND: u32 = 1;
pub const NOT_FOUND: u32 = 2;

// Machine states.
const SEEK: u32 = 0; // looking for a line terminator
const AFTER_CR: u32 = 1; // just after CR: an LF belongs to it
const LINE: u32 = 2; // at the first character of a line
const NAME: u32 = 3; // `pos` characters of "call-id" matched
const COMPACT: u32 = 4; // `i` at the start of a line
const WS: u32 = 5; // whitespace before (`pos` 0) or after (`pos` 1) the colon
const CONT_CR: u32 = 6; // CR inside that whitespace: a continuation line must follow
const CONT_NL: u32 = 7; // line end inside that whitespace
const CONT_WS: u32 = 8; // the continuation line's leading whitespace
const VALUE: u32 = 9; // the value's first word
const DOMAIN: u32 = 10; // the word after `@` (`pos`: its length)

/// "call-id", lower case, one byte per 8 bits from the least significant: a shift picks a
/// byte where an array index would become a read of the object's read-only data.
const NAME_LC: u64 = u64::from_le_bytes(*b"call-id\0");
const NAME_LEN: u32 = 7;

#[inline(always)]
fn name_byte(i: u32) -> u8 {
    (NAME_LC >> (8 * (i & 7))) as u8
}

/// FNV-1a, 32 bits: the Call-ID's hash in the template key.
const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// The search, one byte at a time ([`Scan::step`]). Plain integers: it lives in map memory
/// in the dataplane.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    pub state: u32,
    pub pos: u32,
    /// Length of the value so far (only the first [`CALLID_ROOM`] bytes are kept).
    pub len: u32,
    /// FNV-1a of the value so far.
    pub hash: u32,
    /// [`SCANNING`], [`FOUND`] or [`NOT_FOUND`].
    pub result: u32,
    pub _pad: u32,
}

/// The kernel's `isalpha`: its ctype table also has the Latin-1 letters.
#[inline(always)]
fn is_alpha(c: u8) -> bool {
    c.is_ascii_alphabetic() || (c >= 0xc0 && c != 0xd7 && c != 0xf7)
}

/// nf_conntrack_sip's `iswordc`: what a Call-ID is made of.
#[inline(always)]
pub fn is_word(c: u8) -> bool {
    is_alpha(c)
        || c.is_ascii_digit()
        || matches!(c, b'!' | b'"' | b'%' | b'(' ..=b'+' | b':' | b'<' | b'>' | b'?' | b'[' ..=b']' | b'_' | b'`' | b'{' | b'}' | b'~' | b'-' ..=b'/' | b'\'')
}

#[inline(always)]
fn is_space(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

impl Scan {
    /// A search from the start of the payload (which is never a header line).
    pub const fn new() -> Self {
        Scan { state: SEEK, pos: 0, len: 0, hash: 0, result: SCANNING, _pad: 0 }
    }

    /// Feeds the next byte; the value's bytes go to `out` (`out.len` and `out.hash` are set
    /// when it is found). Returns `true` when the search is over ([`Scan::result`]). At the
    /// end of the data, a search still running has found nothing.
    #[inline(always)]
    pub fn step(&mut self, b: u8, out: &mut CallId) -> bool {
        // A state may hand the byte on to another (a failed name match looks at it again as
        // a possible line end). Two rounds are enough: the only state reached that hands on
        // again is VALUE's empty value, which hands a byte other than CR or LF (those end the
        // whitespace before it) to SEEK, where it changes nothing.
        if self.step_once(b, out) {
            self.step_once(b, out);
        }
        self.result != SCANNING
    }

    /// One round of [`Scan::step`]; `true` when `b` must be looked at again in the new state.
    #[inline(always)]
    fn step_once(&mut self, b: u8, out: &mut CallId) -> bool {
        let lc = b.to_ascii_lowercase();
        match self.state {
            SEEK => {
                if b == b'\r' {
                    self.state = AFTER_CR;
                } else if b == b'\n' {
                    self.state = LINE;
                }
                false
            }
            AFTER_CR => {
                self.state = LINE;
                // CRLF is one terminator; anything else starts the line.
                b != b'\n'
            }
            LINE => {
                // The line's first character is consumed whatever it is (a CR here does not
                // end a line: the kernel's loop steps over it).
                if is_space(b) {
                    self.state = SEEK;
                } else if lc == name_byte(0) {
                    self.state = NAME;
                    self.pos = 1;
                } else if lc == b'i' {
                    self.state = COMPACT;
                } else {
                    self.state = SEEK;
                }
                false
            }
            NAME => {
                if self.pos < NAME_LEN && lc == name_byte(self.pos) {
                    self.pos += 1;
                    if self.pos == NAME_LEN {
                        self.state = WS;
                        self.pos = 0;
                    }
                    false
                } else {
                    // No match: the search goes on from the line's second character, so this
                    // one may end the line.
                    self.state = SEEK;
                    true
                }
            }
            COMPACT => {
                if is_alpha(b) {
                    self.state = SEEK;
                    false
                } else {
                    self.state = WS;
                    self.pos = 0;
                    true
                }
            }
            WS => {
                if is_space(b) {
                } else if b == b'\r' {
                    self.state = CONT_CR;
                } else if b == b'\n' {
                    self.state = CONT_NL;
                } else if self.pos == 0 {
                    if b == b':' {
                        self.pos = 1;
                    } else {
                        // A Call-ID header without its colon: the kernel gives up.
                        self.result = NOT_FOUND;
                    }
                } else {
                    self.state = VALUE;
                    self.len = 0;
                    self.hash = FNV_OFFSET;
                    return true;
                }
                false
            }
            CONT_CR => {
                if b == b'\n' {
                    self.state = CONT_NL;
                } else if is_space(b) {
                    self.state = CONT_WS;
                } else {
                    self.result = NOT_FOUND;
                }
                false
            }
            CONT_NL => {
                if is_space(b) {
                    self.state = CONT_WS;
                } else {
                    // A line end that does not continue the header: no Call-ID.
                    self.result = NOT_FOUND;
                }
                false
            }
            CONT_WS => {
                // The kernel's whitespace loop steps over the first character after a
                // continuation's indentation without looking at it.
                if !is_space(b) {
                    self.state = WS;
                }
                false
            }
            VALUE | DOMAIN => {
                if is_word(b) {
                    self.push(b, out);
                    if self.state == DOMAIN {
                        self.pos += 1;
                    }
                    false
                } else if self.state == VALUE && self.len != 0 && b == b'@' {
                    self.push(b, out);
                    self.state = DOMAIN;
                    self.pos = 0;
                    false
                } else if self.len == 0 || (self.state == DOMAIN && self.pos == 0) {
                    // An empty value (or domain): the search goes on from here.
                    self.state = SEEK;
                    true
                } else {
                    self.result = if (b == b'\r' || b == b'\n') && self.len as usize <= PEDATA_MAXLEN {
                        out.len = self.len;
                        out.hash = self.hash;
                        FOUND
                    } else {
                        NOT_FOUND
                    };
                    false
                }
            }
            _ => {
                self.result = NOT_FOUND;
                false
            }
        }
    }

    #[inline(always)]
    fn push(&mut self, b: u8, out: &mut CallId) {
        let i = self.len as usize;
        if i < CALLID_ROOM {
            out.data[i & (CALLID_ROOM - 1)] = b;
        }
        self.len += 1;
        self.hash = (self.hash ^ b as u32).wrapping_mul(FNV_PRIME);
    }
}

/// The template key's share of the Call-ID: the hash, never 0, which is what tells a SIP
/// template's key from a plain one (their client port and padding are 0). Two calls of one
/// client network whose Call-IDs hash alike share a template (and the listing shows the later
/// Call-ID): 1 in 2^32 per pair of live calls.
#[inline(always)]
pub fn key_hash(hash: u32) -> u32 {
    if hash == 0 {
        1
    } else {
        hash
    }
}

/// Writes the Call-ID share `h` ([`key_hash`]) into a template key: the client port and the
/// padding after the family, both 0 in a plain template's key.
#[inline(always)]
pub fn mark_key(k: &mut crate::flow::FlowKey, h: u32) {
    k.sport = h as u16;
    k._pad = [(h >> 16) as u8, (h >> 24) as u8];
}

/// The Call-ID share of a template key (0: not a SIP template).
#[inline(always)]
pub fn key_mark(k: &crate::flow::FlowKey) -> u32 {
    k.sport as u32 | (k._pad[0] as u32) << 16 | (k._pad[1] as u32) << 24
}

/// The search over a payload on the host: the Call-ID the dataplane finds in it, if any.
pub fn find_callid(payload: &[u8]) -> Option<CallId> {
    let mut scan = Scan::new();
    let mut out = CallId::default();
    for &b in payload.iter().take(SCAN_MAX) {
        if scan.step(b, &mut out) {
            break;
        }
    }
    (scan.result == FOUND).then_some(out)
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::CallId {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{format, string::String};

    fn id(p: &str) -> Option<String> {
        find_callid(p.as_bytes()).map(|c| String::from_utf8(c.bytes().to_vec()).unwrap())
    }

    const INVITE: &str = "INVITE sip:bob@203.0.113.13 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.2:5060\r\n\
        From: <sip:alice@198.51.100.2>\r\nTo: <sip:bob@203.0.113.13>\r\n";

    #[test]
    fn finds_the_call_id_in_any_case_and_the_compact_form() {
        assert_eq!(id(&format!("{INVITE}Call-ID: a84b4c76e66710\r\nCSeq: 1 INVITE\r\n\r\n")).as_deref(), Some("a84b4c76e66710"));
        assert_eq!(id(&format!("{INVITE}call-id:a84b@pc33.example.com\r\n\r\n")).as_deref(), Some("a84b@pc33.example.com"));
        assert_eq!(id(&format!("{INVITE}CALL-ID \t : xyz\n\n")).as_deref(), Some("xyz"));
        assert_eq!(id(&format!("{INVITE}i: f81d4fae-7dec\r\n")).as_deref(), Some("f81d4fae-7dec"));
        assert_eq!(id(&format!("{INVITE}I:\tabc\r\n")).as_deref(), Some("abc"));
        // LF-only and CR-only line ends (RFC 2543).
        assert_eq!(id("OPTIONS sip:x SIP/2.0\nCall-ID: lf\n").as_deref(), Some("lf"));
        assert_eq!(id("OPTIONS sip:x SIP/2.0\rCall-ID: cr\r").as_deref(), Some("cr"));
        // Folded whitespace after the colon; the kernel steps over the first character after
        // the continuation's indentation.
        assert_eq!(id("X\r\nCall-ID:\r\n  xabc\r\n").as_deref(), Some("abc"));
    }

    #[test]
    fn headers_only_at_the_start_of_a_line() {
        // The request line is never a header; other headers merely ending in "i" are not it.
        assert_eq!(id("Call-ID: first\r\nCall-ID: second\r\n").as_deref(), Some("second"));
        assert_eq!(id("X\r\nVia: i: nope\r\nCall-ID: yes\r\n").as_deref(), Some("yes"));
        assert_eq!(id("X\r\nIn-Reply-To: a\r\ni: b\r\n").as_deref(), Some("b"));
        // A continuation line (leading space) is not a header.
        assert_eq!(id("X\r\nSubject: a\r\n Call-ID: no\r\nCall-ID: yes\r\n").as_deref(), Some("yes"));
        // A failed name match looks at the rest of the line for its end.
        assert_eq!(id("X\r\nC\r\nCall-ID: yes\r\n").as_deref(), Some("yes"));
    }

    #[test]
    fn what_the_kernel_refuses() {
        assert_eq!(id(&format!("{INVITE}CSeq: 1 INVITE\r\n\r\n")), None);
        // Name without a colon: the search stops there.
        assert_eq!(id("X\r\nCall-IDx: a\r\nCall-ID: b\r\n"), None);
        assert_eq!(id("X\r\ni-x: a\r\nCall-ID: b\r\n"), None);
        // Value running to the end of the data, or followed by something else than CR/LF.
        assert_eq!(id("X\r\nCall-ID: abc"), None);
        assert_eq!(id("X\r\nCall-ID: abc def\r\n"), None);
        // Longer than IP_VS_PEDATA_MAXLEN.
        let long = "a".repeat(256);
        assert_eq!(id(&format!("X\r\nCall-ID: {long}\r\n")), None);
        let max = "b".repeat(255);
        assert_eq!(id(&format!("X\r\nCall-ID: {max}\r\n")), Some(max));
        // Beyond the bytes searched.
        let pad = "v".repeat(SCAN_MAX);
        assert_eq!(id(&format!("X\r\nVia: {pad}\r\nCall-ID: far\r\n")), None);
    }

    #[test]
    fn an_empty_value_lets_the_search_go_on() {
        assert_eq!(id("X\r\nCall-ID: ;\r\nCall-ID: later\r\n").as_deref(), Some("later"));
        // A line end right after the colon is whitespace that must continue: it does not.
        assert_eq!(id("X\r\nCall-ID: \r\nCall-ID: later\r\n"), None);
        assert_eq!(id("X\r\nCall-ID: a@\r\nCall-ID: b\r\n").as_deref(), Some("b"));
    }

    #[test]
    fn the_hash_is_fnv1a_of_the_value_and_marks_the_key() {
        let c = find_callid(b"X\r\nCall-ID: a\r\n").unwrap();
        assert_eq!(c.hash, (FNV_OFFSET ^ b'a' as u32).wrapping_mul(FNV_PRIME));
        let mut k = crate::flow::FlowKey::default();
        mark_key(&mut k, key_hash(c.hash));
        assert_eq!(key_mark(&k), c.hash);
        assert_eq!(key_hash(0), 1);
    }
}
