//! etcd 3.6's server feature gates (`--feature-gates`, etcd's
//! `pkg/featuregate` with the gates of `server/features`): parsed, checked
//! and combined with the `--experimental-*` flags they replace, as etcd does.

use std::collections::BTreeMap;

/// A gate's maturity; `AllAlpha`/`AllBeta` switch every gate of theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Alpha,
    Beta,
}

/// The gates etcd 3.6.16 knows, with their defaults (`etcd --help` lists them).
const KNOWN: &[(&str, bool, Stage)] = &[
    ("AllAlpha", false, Stage::Alpha),
    ("AllBeta", false, Stage::Beta),
    (COMPACT_HASH_CHECK, false, Stage::Alpha),
    ("InitialCorruptCheck", false, Stage::Alpha),
    ("LeaseCheckpoint", false, Stage::Alpha),
    ("LeaseCheckpointPersist", false, Stage::Alpha),
    ("SetMemberLocalAddr", false, Stage::Alpha),
    ("StopGRPCServiceOnDefrag", false, Stage::Alpha),
    ("TxnModeWriteWithSharedBuffer", true, Stage::Beta),
];

pub(super) const COMPACT_HASH_CHECK: &str = "CompactHashCheck";
pub(super) const INITIAL_CORRUPT_CHECK: &str = "InitialCorruptCheck";
pub(super) const LEASE_CHECKPOINT: &str = "LeaseCheckpoint";
pub(super) const LEASE_CHECKPOINT_PERSIST: &str = "LeaseCheckpointPersist";

/// The gates hub implements: setting another one away from its default is
/// reported as unhonoured. (`TxnModeWriteWithSharedBuffer` is how etcd's
/// write transactions read, with no effect on their answers; hub has no such
/// buffer, so either value is what hub does.)
pub(super) const HONOURED_GATES: &[&str] = &[COMPACT_HASH_CHECK, INITIAL_CORRUPT_CHECK, "TxnModeWriteWithSharedBuffer"];

/// The `--experimental-*` booleans etcd 3.6 turned into gates
/// (`features.ExperimentalFlagToFeatureMap`).
pub(super) const EXPERIMENTAL_FLAG_GATES: &[(&str, &str)] = &[
    ("experimental-compact-hash-check-enabled", COMPACT_HASH_CHECK),
    ("experimental-enable-lease-checkpoint", LEASE_CHECKPOINT),
    ("experimental-enable-lease-checkpoint-persist", LEASE_CHECKPOINT_PERSIST),
    ("experimental-initial-corrupt-check", INITIAL_CORRUPT_CHECK),
    ("experimental-stop-grpc-service-on-defrag", "StopGRPCServiceOnDefrag"),
    ("experimental-txn-mode-write-with-shared-buffer", "TxnModeWriteWithSharedBuffer"),
];

/// The gates set so far (etcd keeps only those, defaults aside).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureGates {
    set: BTreeMap<&'static str, bool>,
}

impl FeatureGates {
    /// Applies one `--feature-gates` value, `Name=bool,...` (Go's
    /// `featureGate.Set`): a later value of a gate wins, `AllAlpha`/`AllBeta`
    /// set every gate of theirs not set otherwise.
    pub(super) fn set(&mut self, value: &str) -> Result<(), String> {
        let mut pairs = Vec::new();
        for item in value.split(',').filter(|s| !s.is_empty()) {
            let (name, v) = match item.split_once('=') {
                Some((name, v)) => (name.trim(), v.trim()),
                None => return Err(format!("missing bool value for {}", item.trim())),
            };
            let on = super::go_bool(v).map_err(|_| {
                format!("invalid value of {name}={v}, err: strconv.ParseBool: parsing {}: invalid syntax", hub_go::quote(v.as_bytes()))
            })?;
            pairs.push((name, on));
        }
        self.set_all(&pairs)
    }

    /// Go's `SetFromMap`: every name must be a known gate.
    fn set_all(&mut self, pairs: &[(&str, bool)]) -> Result<(), String> {
        let mut set = self.set.clone();
        // Explicit values first, so that AllAlpha/AllBeta fill in only the rest
        // (etcd gets the same result whatever its map's order).
        let mut specials = Vec::new();
        for &(name, on) in pairs {
            let Some(&(known, _, _)) = KNOWN.iter().find(|(n, _, _)| *n == name) else {
                return Err(format!("unrecognized feature gate: {name}"));
            };
            set.insert(known, on);
            match known {
                "AllAlpha" => specials.push((Stage::Alpha, on)),
                "AllBeta" => specials.push((Stage::Beta, on)),
                _ => {}
            }
        }
        for (stage, on) in specials {
            for &(name, _, s) in KNOWN {
                if s == stage {
                    set.entry(name).or_insert(on);
                }
            }
        }
        self.set = set;
        Ok(())
    }

    /// Whether gate `name` is on.
    pub fn enabled(&self, name: &str) -> bool {
        match self.set.get(name) {
            Some(&on) => on,
            None => KNOWN.iter().any(|&(n, default, _)| n == name && default),
        }
    }

    /// Every gate etcd knows, `(name, stage, enabled)` (its
    /// `etcd_server_feature_enabled` metric).
    pub fn all(&self) -> Vec<(&'static str, &'static str, bool)> {
        KNOWN
            .iter()
            .map(|&(name, _, stage)| (name, if stage == Stage::Alpha { "ALPHA" } else { "BETA" }, self.enabled(name)))
            .collect()
    }

    /// Gates set away from their default, for the start-up warning.
    pub(super) fn changed(&self) -> impl Iterator<Item = &'static str> + '_ {
        KNOWN
            .iter()
            .filter(|&&(name, default, _)| !name.starts_with("All") && self.enabled(name) != default)
            .map(|&(name, _, _)| name)
    }

    /// etcd's `SetFeatureGatesFromExperimentalFlags`: each `--experimental-*`
    /// boolean the user set gives its gate's value, unless `--feature-gates`
    /// names that gate too (etcd looks for the name in the gates' text, so
    /// `LeaseCheckpointPersist=...` also counts as naming `LeaseCheckpoint`).
    pub(super) fn add_experimental_flags(&mut self, flags: &[(&str, bool)]) -> Result<(), String> {
        let text = self.to_string();
        let mut pairs = Vec::new();
        for &(flag, gate) in EXPERIMENTAL_FLAG_GATES {
            let Some(&(_, on)) = flags.iter().find(|(f, _)| *f == flag) else { continue };
            if text.contains(gate) {
                let value = self.enabled(gate);
                return Err(format!(
                    "cannot specify both flags: --{flag}={on} and --feature-gates={gate}={value} at the same time, \
                     please just use --feature-gates={gate}={value}"
                ));
            }
            pairs.push((gate, on));
        }
        self.set_all(&pairs)
    }
}

/// The gates set, `Name=bool` sorted and comma-separated (etcd's `String`).
impl std::fmt::Display for FeatureGates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pairs: Vec<String> = self.set.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&pairs.join(","))
    }
}

/// `--feature-gates`' value parser: one value checked as etcd checks it.
pub(super) fn feature_gates(s: &str) -> Result<String, String> {
    FeatureGates::default().set(s).map(|()| s.to_string())
}
