//! Committed offsets of consumer groups: one small JSON file per group under `groups/`,
//! replaced atomically (write a temporary file, fsync it, rename it over, fsync the directory).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::segment::sync_dir;
use crate::WalError;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OffsetsFile {
    version: u32,
    offsets: Vec<CommittedOffset>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommittedOffset {
    topic: String,
    partition: i32,
    next_offset: i64,
}

/// `(topic, partition) -> next offset to consume`.
pub(crate) type Offsets = BTreeMap<(String, i32), i64>;

/// Every known group's committed offsets, mirrored in memory.
#[derive(Debug)]
pub(crate) struct Groups {
    dir: PathBuf,
    groups: HashMap<String, Offsets>,
}

impl Groups {
    /// Loads every `<group>.json` in `dir` (created if missing); stray temporary files are removed.
    pub fn load(dir: &Path) -> Result<Self, WalError> {
        std::fs::create_dir_all(dir).map_err(WalError::io(dir))?;
        let mut groups = HashMap::new();
        for entry in std::fs::read_dir(dir).map_err(WalError::io(dir))? {
            let entry = entry.map_err(WalError::io(dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json.tmp") {
                // A commit that crashed before its rename: the previous file is the truth.
                std::fs::remove_file(&path).map_err(WalError::io(&path))?;
                continue;
            }
            let Some(group) = name.strip_suffix(".json") else {
                tracing::warn!(path = %path.display(), "ignoring a file that is no group offsets file");
                continue;
            };
            let bytes = std::fs::read(&path).map_err(WalError::io(&path))?;
            let file: OffsetsFile =
                serde_json::from_slice(&bytes).map_err(|e| WalError::Layout {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            let offsets = file
                .offsets
                .into_iter()
                .map(|o| ((o.topic, o.partition), o.next_offset))
                .collect();
            groups.insert(group.to_string(), offsets);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            groups,
        })
    }

    pub fn is_known(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.groups
            .get(group)?
            .get(&(topic.to_string(), partition))
            .copied()
    }

    /// The smallest offset committed for `(topic, partition)` by every known group, or `None`
    /// when no group is known. A known group without a commit there counts as 0.
    pub fn min_committed(&self, topic: &str, partition: i32) -> Option<i64> {
        self.groups
            .values()
            .map(|o| o.get(&(topic.to_string(), partition)).copied().unwrap_or(0))
            .min()
    }

    /// Records and durably stores `next_offset` for the group.
    pub fn commit(&mut self, group: &str, commits: &[(String, i32, i64)]) -> Result<(), WalError> {
        let mut offsets = self.groups.get(group).cloned().unwrap_or_default();
        for (topic, partition, next_offset) in commits {
            offsets.insert((topic.clone(), *partition), *next_offset);
        }
        let file = OffsetsFile {
            version: 1,
            offsets: offsets
                .iter()
                .map(|((topic, partition), next_offset)| CommittedOffset {
                    topic: topic.clone(),
                    partition: *partition,
                    next_offset: *next_offset,
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| WalError::Layout {
            path: self.dir.clone(),
            reason: e.to_string(),
        })?;
        let path = self.dir.join(format!("{group}.json"));
        let tmp = self.dir.join(format!("{group}.json.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(WalError::io(&tmp))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(WalError::io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(WalError::io(&path))?;
        sync_dir(&self.dir)?;
        self.groups.insert(group.to_string(), offsets);
        Ok(())
    }
}
