//! Deterministic operation ids.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The id of a durable operation within one execution: the id of the scope it was created in plus
/// its sequence number within that scope, written `3` for the fourth operation of the root scope
/// and `3.1` for the second operation inside scope `3`.
///
/// Ids depend only on where in the code an operation is created, never on the order in which
/// concurrent work finishes, so concurrent branches get the same ids on every replay.
#[derive(Clone)]
pub struct OpId(Path);

/// How deep an id's path may be and still be kept inline.
const INLINE_DEPTH: usize = 4;

/// The sequence numbers of an id. Ids are made, cloned and hashed for every operation of every
/// turn and replay, and most are shallow: up to [`INLINE_DEPTH`] levels are kept inline, with
/// no allocation, and the whole stays as small as a `Vec` (so is an `Option` of it).
#[derive(Clone)]
enum Path {
    /// `len` levels, the first `len` of `seqs`.
    Inline { len: u8, seqs: [u32; INLINE_DEPTH] },
    /// More than [`INLINE_DEPTH`] levels.
    Heap(Box<[u32]>),
}

impl Path {
    fn from_slice(path: &[u32]) -> Path {
        match u8::try_from(path.len()) {
            Ok(len) if path.len() <= INLINE_DEPTH => {
                let mut seqs = [0; INLINE_DEPTH];
                seqs[..path.len()].copy_from_slice(path);
                Path::Inline { len, seqs }
            }
            _ => Path::Heap(path.into()),
        }
    }

    fn as_slice(&self) -> &[u32] {
        match self {
            Path::Inline { len, seqs } => &seqs[..usize::from(*len)],
            Path::Heap(seqs) => seqs,
        }
    }
}

impl OpId {
    /// The id of operation `seq` inside `scope` (`None` for the root scope).
    pub fn new(scope: Option<&OpId>, seq: u32) -> Self {
        let scope = scope.map_or(&[][..], OpId::path);
        match (scope.len(), u8::try_from(scope.len() + 1)) {
            (depth, Ok(len)) if depth < INLINE_DEPTH => {
                let mut seqs = [0; INLINE_DEPTH];
                seqs[..depth].copy_from_slice(scope);
                seqs[depth] = seq;
                OpId(Path::Inline { len, seqs })
            }
            _ => {
                let mut path = Vec::with_capacity(scope.len() + 1);
                path.extend_from_slice(scope);
                path.push(seq);
                OpId(Path::Heap(path.into_boxed_slice()))
            }
        }
    }

    /// The id with this path of sequence numbers (`[3, 1]` is `3.1`).
    pub fn from_path(path: &[u32]) -> Self {
        OpId(Path::from_slice(path))
    }

    /// The path of sequence numbers from the root scope.
    pub fn path(&self) -> &[u32] {
        self.0.as_slice()
    }
}

// Equality and hashing run for every map lookup of every operation. They read an inline id as
// the fixed array it is, with no slice compare or byte-slice hash: an id is inline exactly when
// it has at most `INLINE_DEPTH` levels, and the levels past its length are always zero, so two
// ids are equal exactly when their representations are.
impl PartialEq for OpId {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Path::Inline { len: a, seqs: x }, Path::Inline { len: b, seqs: y }) => {
                a == b && x == y
            }
            (Path::Heap(x), Path::Heap(y)) => x == y,
            _ => false,
        }
    }
}

impl Eq for OpId {}

impl Hash for OpId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match &self.0 {
            Path::Inline { len, seqs } => {
                let [a, b, c, d] = seqs.map(u64::from);
                state.write_u8(*len);
                state.write_u64(a | b << 32);
                state.write_u64(c | d << 32);
            }
            Path::Heap(seqs) => seqs.hash(state),
        }
    }
}

impl PartialOrd for OpId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OpId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.path().cmp(other.path())
    }
}

impl fmt::Debug for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OpId").field(&self.path()).finish()
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seq) in self.path().iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{seq}")?;
        }
        Ok(())
    }
}

/// An operation id string was not of the form `1.2.3`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid operation id {0:?}: expected dot-separated numbers such as \"3\" or \"3.1\"")]
pub struct OpIdParseError(String);

impl FromStr for OpId {
    type Err = OpIdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(OpIdParseError(s.to_owned()));
        }
        let mut seqs = [0; INLINE_DEPTH];
        let mut len = 0;
        let mut deeper: Option<Vec<u32>> = None;
        for part in s.split('.') {
            let seq = part
                .parse::<u32>()
                .map_err(|_| OpIdParseError(s.to_owned()))?;
            match (&mut deeper, seqs.get_mut(len)) {
                (None, Some(slot)) => {
                    *slot = seq;
                    len += 1;
                }
                (None, None) => {
                    let mut path = seqs.to_vec();
                    path.push(seq);
                    deeper = Some(path);
                }
                (Some(path), _) => path.push(seq),
            }
        }
        Ok(match deeper {
            Some(path) => OpId(Path::Heap(path.into_boxed_slice())),
            None => OpId::from_path(&seqs[..len]),
        })
    }
}

impl Serialize for OpId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OpId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(OpIdVisitor)
    }
}

/// Reads an id from a string without copying it first (journals are decoded id by id).
struct OpIdVisitor;

impl serde::de::Visitor<'_> for OpIdVisitor {
    type Value = OpId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an operation id such as \"3\" or \"3.1\"")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<OpId, E> {
        s.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_round_trip() {
        let root = OpId::new(None, 3);
        let child = OpId::new(Some(&root), 1);
        assert_eq!(root.to_string(), "3");
        assert_eq!(child.to_string(), "3.1");
        assert_eq!("3.1".parse::<OpId>().unwrap(), child);
        assert!("3..1".parse::<OpId>().is_err());
        assert!("".parse::<OpId>().is_err());
        let json = serde_json::to_string(&child).unwrap();
        assert_eq!(json, "\"3.1\"");
        assert_eq!(serde_json::from_str::<OpId>(&json).unwrap(), child);
        // An escaped string is not borrowed from the input, and still reads.
        assert_eq!(
            serde_json::from_str::<OpId>("\"3\\u002e1\"").unwrap(),
            child
        );
        let err = serde_json::from_str::<OpId>("7").unwrap_err().to_string();
        assert!(err.contains("an operation id such as"), "{err}");
    }

    #[test]
    fn an_id_is_no_bigger_than_a_vec() {
        assert!(std::mem::size_of::<OpId>() <= std::mem::size_of::<Vec<u32>>());
        assert!(std::mem::size_of::<Option<OpId>>() <= std::mem::size_of::<Vec<u32>>());
    }

    #[test]
    fn deep_ids_keep_every_level() {
        let mut id = OpId::new(None, 0);
        for seq in 1..=(INLINE_DEPTH as u32 + 3) {
            id = OpId::new(Some(&id), seq);
        }
        assert_eq!(id.path().len(), INLINE_DEPTH + 4);
        assert_eq!(id.to_string().parse::<OpId>().unwrap(), id);
        assert_eq!(OpId::from_path(id.path()), id);
    }

    fn hash_of(id: &OpId) -> u64 {
        use std::hash::BuildHasher;
        foldhash::fast::FixedState::with_seed(7).hash_one(id)
    }

    /// An id by each way of making one: sequence by sequence, from its path, parsed.
    fn made_every_way(path: &[u32]) -> [OpId; 3] {
        let mut built: Option<OpId> = None;
        for seq in path {
            built = Some(OpId::new(built.as_ref(), *seq));
        }
        let built = built.unwrap_or_else(|| OpId::from_path(&[]));
        let text = path
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(".");
        let parsed = if path.is_empty() {
            OpId::from_path(&[])
        } else {
            text.parse().unwrap()
        };
        [built, OpId::from_path(path), parsed]
    }

    proptest::proptest! {
        /// Equality and hashing read an inline id's representation: they must still agree
        /// with its path, whichever way it was made, however deep (zeros and prefixes too:
        /// `0` and `0.0` differ).
        #[test]
        fn equality_and_hashes_follow_the_path(
            a in proptest::collection::vec(0u32..3, 0..7),
            b in proptest::collection::vec(0u32..3, 0..7),
        ) {
            let ids_a = made_every_way(&a);
            let ids_b = made_every_way(&b);
            for x in &ids_a {
                for y in &ids_a {
                    proptest::prop_assert_eq!(x, y);
                    proptest::prop_assert_eq!(hash_of(x), hash_of(y));
                }
                for y in &ids_b {
                    proptest::prop_assert_eq!(x == y, a == b);
                    proptest::prop_assert_eq!(x.cmp(y), a.cmp(&b));
                }
            }
        }
    }
}
