//! YAML from outside (module manifests, plan catalogs), checked before it is
//! deserialized.
//!
//! YAML anchors and aliases let a few kilobytes describe gigabytes: every
//! `*alias` repeats the node its anchor names, and aliases of nodes that
//! themselves hold aliases multiply ("billion laughs"). `serde_yaml` expands
//! them while it deserializes, so the only safe moment to refuse them is
//! before. [`from_str`] first runs the document through the same event parser
//! `serde_yaml` uses (`unsafe-libyaml`, an iterative state machine that keeps
//! its nesting on the heap, never on the call stack), and refuses, without
//! building anything:
//!
//! - anchors (`&name`) and aliases (`*name`);
//! - merge keys (`<<`), which only make sense with aliases;
//! - nesting deeper than [`YamlLimits::max_depth`] (so no recursive
//!   deserializer, `serde_yaml`'s own included, ever recurses further);
//! - more than [`YamlLimits::max_nodes`] nodes, and text longer than
//!   [`YamlLimits::max_bytes`];
//! - more than one document.
//!
//! Only a document that passes is handed to `serde_yaml`. Because both read
//! the same events from the same parser, what was checked is exactly what is
//! deserialized: there is no second parser whose reading could differ.
//!
//! The cost of the check is one pass over the text, with memory proportional
//! to the nesting depth (bounded) plus the longest scalar (bounded by the
//! size).

use std::marker::PhantomData;
use std::mem::MaybeUninit;

use serde::de::DeserializeOwned;
use unsafe_libyaml as unsafe_sys;

/// Bounds on one YAML document from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YamlLimits {
    /// Longest accepted text, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted nesting of mappings and sequences; the document's
    /// top-level mapping is depth 1. Kept well below `serde_yaml`'s own
    /// recursion limit (128).
    pub max_depth: usize,
    /// Most accepted nodes (scalars, mappings and sequences, keys included).
    pub max_nodes: usize,
}

impl YamlLimits {
    /// Limits for a module manifest (`module.yaml`): 1 MiB (the package
    /// format caps a manifest at 64 KiB by default, before this check),
    /// depth 32 (a manifest needs about 6), 100,000 nodes.
    pub const MANIFEST: YamlLimits = YamlLimits {
        max_bytes: 1024 * 1024,
        max_depth: 32,
        max_nodes: 100_000,
    };

    /// Limits for one plan-catalog file: 4 MiB, depth 32 (a catalog needs
    /// about 7), 500,000 nodes.
    pub const CATALOG: YamlLimits = YamlLimits {
        max_bytes: 4 * 1024 * 1024,
        max_depth: 32,
        max_nodes: 500_000,
    };
}

/// Where in the text something was found (1-based, as editors count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1.
    pub column: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} column {}", self.line, self.column)
    }
}

/// Why YAML from outside was refused.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    /// The text is longer than [`YamlLimits::max_bytes`].
    #[error("the YAML is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// In bytes.
        size: usize,
        /// In bytes.
        limit: usize,
    },
    /// An anchor (`&name`) or alias (`*name`).
    #[error(
        "{at}: YAML anchors (`&name`) and aliases (`*name`) are not accepted; write each value out in full"
    )]
    AnchorOrAlias { at: Position },
    /// A merge key (`<<`).
    #[error("{at}: YAML merge keys (`<<`) are not accepted; write each key out in full")]
    MergeKey { at: Position },
    /// Nesting deeper than [`YamlLimits::max_depth`].
    #[error("{at}: the YAML is nested more than {limit} levels deep")]
    TooDeep {
        /// Where the limit was crossed.
        at: Position,
        limit: usize,
    },
    /// More than [`YamlLimits::max_nodes`] nodes.
    #[error("{at}: the YAML has more than {limit} nodes")]
    TooManyNodes {
        /// Where the limit was crossed.
        at: Position,
        limit: usize,
    },
    /// More than one document (`---`).
    #[error("{at}: the YAML holds more than one document; give exactly one")]
    SeveralDocuments {
        /// Where the second document starts.
        at: Position,
    },
    /// The text is not YAML, or not of the expected shape (unknown field,
    /// wrong type, missing field). The message says where.
    #[error("{0}")]
    Invalid(#[from] serde_yaml::Error),
}

/// Checks `text` against `limits` and the rules in the [module
/// documentation](self), without deserializing anything.
///
/// # Errors
/// The first rule the text breaks; [`YamlError::Invalid`] when it is not
/// YAML at all.
pub fn check(text: &str, limits: YamlLimits) -> Result<(), YamlError> {
    if text.len() > limits.max_bytes {
        return Err(YamlError::TooLarge {
            size: text.len(),
            limit: limits.max_bytes,
        });
    }
    let Some(mut parser) = EventParser::new(text.as_bytes()) else {
        return Err(syntax_error(text));
    };
    // One entry per open collection: `Some(expecting_key)` for a mapping,
    // `None` for a sequence. Its length is the depth.
    let mut open: Vec<Option<bool>> = Vec::new();
    let mut nodes = 0usize;
    let mut documents = 0usize;
    loop {
        let Some(event) = parser.next() else {
            return Err(syntax_error(text));
        };
        let at = event.at;
        let is_key = matches!(open.last(), Some(Some(true)));
        let node = match event.kind {
            EventKind::StreamEnd => return Ok(()),
            EventKind::StreamStart | EventKind::DocumentEnd => false,
            EventKind::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError::SeveralDocuments { at });
                }
                false
            }
            EventKind::Alias => return Err(YamlError::AnchorOrAlias { at }),
            EventKind::Scalar { anchored, merge } => {
                if anchored {
                    return Err(YamlError::AnchorOrAlias { at });
                }
                if merge && is_key {
                    return Err(YamlError::MergeKey { at });
                }
                true
            }
            EventKind::SequenceStart { anchored } | EventKind::MappingStart { anchored } => {
                if anchored {
                    return Err(YamlError::AnchorOrAlias { at });
                }
                if open.len() >= limits.max_depth {
                    return Err(YamlError::TooDeep {
                        at,
                        limit: limits.max_depth,
                    });
                }
                true
            }
            EventKind::SequenceEnd | EventKind::MappingEnd => {
                open.pop();
                false
            }
        };
        if node {
            nodes += 1;
            if nodes > limits.max_nodes {
                return Err(YamlError::TooManyNodes {
                    at,
                    limit: limits.max_nodes,
                });
            }
            // A complete node in a mapping flips it between key and value.
            if let Some(Some(expecting_key)) = open.last_mut() {
                *expecting_key = !*expecting_key;
            }
        }
        match event.kind {
            EventKind::SequenceStart { .. } => open.push(None),
            EventKind::MappingStart { .. } => open.push(Some(true)),
            _ => {}
        }
    }
}

/// Deserializes `text` after [`check`] accepted it.
///
/// # Errors
/// Whatever [`check`] refuses; [`YamlError::Invalid`] when the YAML is
/// malformed or does not have the shape of `T`.
pub fn from_str<T: DeserializeOwned>(text: &str, limits: YamlLimits) -> Result<T, YamlError> {
    check(text, limits)?;
    Ok(serde_yaml::from_str(text)?)
}

/// The error `serde_yaml` gives for text the event parser could not read.
/// Safe to ask for: everything before the syntax error passed [`check`]
/// (no aliases, bounded depth), and `serde_yaml` stops at the same error
/// before it deserializes anything after it.
fn syntax_error(text: &str) -> YamlError {
    match serde_yaml::from_str::<serde::de::IgnoredAny>(text) {
        Err(e) => YamlError::Invalid(e),
        Ok(_) => YamlError::Invalid(<serde_yaml::Error as serde::de::Error>::custom(
            "the YAML could not be read",
        )),
    }
}

/// What [`check`] needs to know of one parser event.
#[derive(Debug, Clone, Copy)]
enum EventKind {
    StreamStart,
    StreamEnd,
    DocumentStart,
    DocumentEnd,
    Alias,
    Scalar { anchored: bool, merge: bool },
    SequenceStart { anchored: bool },
    SequenceEnd,
    MappingStart { anchored: bool },
    MappingEnd,
}

#[derive(Debug, Clone, Copy)]
struct Event {
    kind: EventKind,
    at: Position,
}

/// libyaml's event parser over borrowed input. The parser keeps a pointer to
/// itself once its input is set, so it lives in a `Box` and never moves.
struct EventParser<'input> {
    raw: Box<MaybeUninit<unsafe_sys::yaml_parser_t>>,
    done: bool,
    _input: PhantomData<&'input [u8]>,
}

impl<'input> EventParser<'input> {
    /// `None` if libyaml could not allocate its buffers.
    fn new(input: &'input [u8]) -> Option<Self> {
        let mut raw = Box::new(MaybeUninit::<unsafe_sys::yaml_parser_t>::uninit());
        let parser = raw.as_mut_ptr();
        // SAFETY: `parser` points to writable memory for a `yaml_parser_t`
        // that `yaml_parser_initialize` fills in (it zeroes it first). On
        // failure it frees what it allocated, and we never touch it again
        // (no `EventParser`, so no `yaml_parser_delete`). The input slice
        // outlives the parser (`'input`), and the parser does not move (it is
        // boxed) after `yaml_parser_set_input_string` stores its pointers.
        unsafe {
            if unsafe_sys::yaml_parser_initialize(parser).fail {
                return None;
            }
            unsafe_sys::yaml_parser_set_encoding(parser, unsafe_sys::YAML_UTF8_ENCODING);
            unsafe_sys::yaml_parser_set_input_string(parser, input.as_ptr(), input.len() as u64);
        }
        Some(EventParser {
            raw,
            done: false,
            _input: PhantomData,
        })
    }

    /// The next event; `None` on a syntax error (and forever after it).
    fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        let parser = self.raw.as_mut_ptr();
        let mut event = MaybeUninit::<unsafe_sys::yaml_event_t>::uninit();
        // SAFETY: the parser was initialised in `new` and is not used after a
        // failed parse (`done`). On success `yaml_parser_parse` initialises
        // `event`, whose union is read only through the member its `type_`
        // names, and whose pointers (anchor, value) are valid until
        // `yaml_event_delete`, which is called exactly once before returning.
        unsafe {
            if unsafe_sys::yaml_parser_parse(parser, event.as_mut_ptr()).fail {
                self.done = true;
                return None;
            }
            let event = event.as_mut_ptr();
            let mark = (*event).start_mark;
            let at = Position {
                line: mark.line.saturating_add(1),
                column: mark.column.saturating_add(1),
            };
            let kind = match (*event).type_ {
                unsafe_sys::YAML_STREAM_START_EVENT => EventKind::StreamStart,
                unsafe_sys::YAML_STREAM_END_EVENT => EventKind::StreamEnd,
                unsafe_sys::YAML_DOCUMENT_START_EVENT => EventKind::DocumentStart,
                unsafe_sys::YAML_DOCUMENT_END_EVENT => EventKind::DocumentEnd,
                unsafe_sys::YAML_ALIAS_EVENT => EventKind::Alias,
                unsafe_sys::YAML_SCALAR_EVENT => {
                    let scalar = (*event).data.scalar;
                    let value: &[u8] = if scalar.value.is_null() {
                        &[]
                    } else {
                        std::slice::from_raw_parts(scalar.value, scalar.length as usize)
                    };
                    EventKind::Scalar {
                        anchored: !scalar.anchor.is_null(),
                        merge: value == b"<<",
                    }
                }
                unsafe_sys::YAML_SEQUENCE_START_EVENT => EventKind::SequenceStart {
                    anchored: !(*event).data.sequence_start.anchor.is_null(),
                },
                unsafe_sys::YAML_SEQUENCE_END_EVENT => EventKind::SequenceEnd,
                unsafe_sys::YAML_MAPPING_START_EVENT => EventKind::MappingStart {
                    anchored: !(*event).data.mapping_start.anchor.is_null(),
                },
                unsafe_sys::YAML_MAPPING_END_EVENT => EventKind::MappingEnd,
                // `YAML_NO_EVENT` is not produced by a successful parse;
                // treat anything unexpected as unreadable input.
                _ => {
                    unsafe_sys::yaml_event_delete(event);
                    self.done = true;
                    return None;
                }
            };
            unsafe_sys::yaml_event_delete(event);
            if matches!(kind, EventKind::StreamEnd) {
                self.done = true;
            }
            Some(Event { kind, at })
        }
    }
}

impl Drop for EventParser<'_> {
    fn drop(&mut self) {
        // SAFETY: the parser was initialised in `new` (an `EventParser`
        // exists only then) and is deleted exactly once, here.
        unsafe { unsafe_sys::yaml_parser_delete(self.raw.as_mut_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(text: &str) -> YamlError {
        match from_str::<serde_yaml::Value>(text, YamlLimits::MANIFEST) {
            Err(e) => e,
            Ok(v) => panic!("accepted: {v:?}"),
        }
    }

    /// A "billion laughs" document: each level lists the previous one ten
    /// times, so `levels` levels expand to 10^levels scalars.
    fn laughs(levels: usize) -> String {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..=levels {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        text
    }

    #[test]
    fn plain_documents_deserialize_as_serde_yaml_reads_them() {
        let text = "slug: x\nroutes:\n  - {method: GET, path: '/files/{*rest}'}\n  - path: /a/{*rest}\nn: [1, 2, 3]\nstar: '*not-an-alias'\namp: 'a & b'\nplain: a*b&c\n";
        let ours: serde_yaml::Value = from_str(text, YamlLimits::MANIFEST).unwrap();
        let theirs: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn alias_bombs_of_every_shape_are_refused_before_expansion() {
        let started = std::time::Instant::now();
        for text in [
            laughs(9),
            laughs(1),
            "a: &x 1\nb: *x\n".to_owned(),
            // An anchor alone, never used.
            "a: &x 1\n".to_owned(),
            "a: &x [1]\n".to_owned(),
            "a: &x {k: v}\n".to_owned(),
            // Alias as a mapping key, in flow and block style.
            "a: &k key\n? *k\n: v\n".to_owned(),
            "x: {*k : v}\n".to_owned(),
            // Nested in plans, as in a manifest.
            "plans:\n  - &p {slug: free}\n  - *p\n".to_owned(),
            // Anchors with tags.
            "a: !!str &x 1\nb: *x\n".to_owned(),
        ] {
            let e = refuse(&text);
            assert!(matches!(e, YamlError::AnchorOrAlias { .. }), "{text}: {e}");
            assert!(e.to_string().contains("aliases"), "{e}");
        }
        eprintln!("refused ten bombs in {:?}", started.elapsed());
    }

    #[test]
    fn merge_keys_are_refused() {
        for text in [
            "a: {x: 1}\nb:\n  <<: {y: 2}\n",
            "b: {<<: {y: 2}}\n",
            "b:\n  '<<': 1\n",
            "b:\n  - <<: [1]\n",
        ] {
            let e = refuse(text);
            assert!(matches!(e, YamlError::MergeKey { .. }), "{text}: {e}");
        }
        // `<<` as a value is just text.
        let v: serde_yaml::Value = from_str("a: <<\nb: [<<]\n", YamlLimits::MANIFEST).unwrap();
        assert_eq!(v["a"], serde_yaml::Value::String("<<".into()));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing() {
        // Far deeper than any recursive reader's stack could take.
        for text in [
            "[".repeat(500_000),
            format!("{}1{}", "[".repeat(33), "]".repeat(33)),
            format!("a: {}1{}", "{b: ".repeat(40), "}".repeat(40)),
            (0..40)
                .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
                .collect::<String>(),
            (0..40)
                .map(|i| format!("{}-\n", "  ".repeat(i)))
                .collect::<String>(),
        ] {
            let limits = YamlLimits {
                max_bytes: usize::MAX,
                ..YamlLimits::MANIFEST
            };
            let e = from_str::<serde_yaml::Value>(&text, limits).unwrap_err();
            assert!(matches!(e, YamlError::TooDeep { limit: 32, .. }), "{e}");
        }
        // Exactly at the limit is fine.
        let text = format!("{}1{}", "[".repeat(32), "]".repeat(32));
        from_str::<serde_yaml::Value>(&text, YamlLimits::MANIFEST).unwrap();
    }

    #[test]
    fn size_node_count_and_documents_are_bounded() {
        let limits = YamlLimits {
            max_bytes: 1000,
            max_depth: 8,
            max_nodes: 10,
        };
        let e = from_str::<serde_yaml::Value>(&"a".repeat(1001), limits).unwrap_err();
        assert!(matches!(e, YamlError::TooLarge { size: 1001, .. }), "{e}");
        let e = from_str::<serde_yaml::Value>("[1,2,3,4,5,6,7,8,9,10]", limits).unwrap_err();
        assert!(
            matches!(e, YamlError::TooManyNodes { limit: 10, .. }),
            "{e}"
        );
        from_str::<serde_yaml::Value>("[1,2,3,4,5,6,7,8,9]", limits).unwrap();
        let e = from_str::<serde_yaml::Value>("a: 1\n---\nb: 2\n", limits).unwrap_err();
        assert!(matches!(e, YamlError::SeveralDocuments { .. }), "{e}");
        // A huge scalar within the size limit is just a long string.
        let big = format!("a: '{}'\n", "x".repeat(900_000));
        let v: serde_yaml::Value = from_str(&big, YamlLimits::MANIFEST).unwrap();
        assert_eq!(v["a"].as_str().map(str::len), Some(900_000));
        let e = refuse(&format!("a: '{}'\n", "x".repeat(2 * 1024 * 1024)));
        assert!(matches!(e, YamlError::TooLarge { .. }), "{e}");
    }

    #[test]
    fn syntax_errors_say_where() {
        for text in [
            "a: [",
            "a: 'unterminated",
            "a: b: c",
            "{a: 1",
            "a: 1\nb: [x,\n  - y",
        ] {
            let e = refuse(text);
            assert!(matches!(e, YamlError::Invalid(_)), "{text}: {e}");
            assert!(e.to_string().contains("line"), "{text}: {e}");
        }
        // At the very first character serde_yaml names no position.
        assert!(matches!(refuse("\t- x"), YamlError::Invalid(_)));
    }

    #[test]
    fn a_syntax_error_after_a_bomb_reports_the_bomb() {
        let text = format!("{}\nbroken: [", laughs(8));
        assert!(matches!(refuse(&text), YamlError::AnchorOrAlias { .. }));
    }
}
