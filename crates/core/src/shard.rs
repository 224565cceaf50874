//! `--shard I/N`: splitting a per-item stage over N processes or machines. An item belongs to
//! shard `hash(id) mod N`, so the split is stable across runs and needs no coordination; each
//! shard writes its own ledger and the ledgers merge by id.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole job as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether the item with this stable id belongs to this shard.
    pub fn owns(&self, id: &str) -> bool {
        self.count <= 1 || stable_hash(id) % self.count as u64 == self.index as u64
    }

    /// A file-name suffix: empty for the whole job, `.shard-I-of-N` otherwise.
    pub fn suffix(&self) -> String {
        if self.count <= 1 {
            String::new()
        } else {
            format!(".shard-{}-of-{}", self.index, self.count)
        }
    }
}

impl std::str::FromStr for Shard {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Other(format!("--shard {s:?}: expected I/N with 0 <= I < N"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// FNV-1a over the id's bytes: the same on every machine and every run.
pub fn stable_hash(id: &str) -> u64 {
    crate::seed::fnv1a(id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_id_exactly_once() {
        let shards: Vec<Shard> = (0..3).map(|i| format!("{i}/3").parse().unwrap()).collect();
        let mut sizes = [0usize; 3];
        for k in 0..3000 {
            let id = format!("discipline-{k}/q3");
            let owners: Vec<usize> = (0..3).filter(|&s| shards[s].owns(&id)).collect();
            assert_eq!(owners.len(), 1, "{id}");
            sizes[owners[0]] += 1;
        }
        assert!(sizes.iter().all(|&n| n > 900), "{sizes:?}");
        assert!(Shard::ALL.owns("anything"));
    }

    #[test]
    fn bad_shard_specs_are_refused() {
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!("2/5".parse::<Shard>().unwrap().suffix(), ".shard-2-of-5");
    }
}
