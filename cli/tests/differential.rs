//! Differential tests: every script in `tests/scripts/` runs once with etcdctl
//! and once with hubctl, against etcd and against hubd; stdout, the `Error:`
//! lines and the exit code of every step must be identical.

mod common;

use std::path::Path;

use common::ServerKind;

fn check(script_name: &str, server: &Path, kind: ServerKind) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts").join(script_name);
    let script = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let diffs = common::differential(server, kind, &script);
    assert!(diffs.is_empty(), "{script_name} against {}:\n{}", server.display(), diffs.join("\n"));
}

macro_rules! scripts {
    ($($name:ident => $file:literal),* $(,)?) => {
        mod against_etcd {
            $(#[test] fn $name() { super::check($file, &super::common::etcd_bin(), super::ServerKind::Etcd); })*
        }
        mod against_hubd {
            $(#[test] fn $name() { super::check($file, &super::common::hubd_bin(), super::ServerKind::Hubd); })*
        }
    };
}

scripts! {
    kv => "kv.txt",
    txn => "txn.txt",
    lease => "lease.txt",
    cluster => "cluster.txt",
    watch => "watch.txt",
    flags => "flags.txt",
    snapshot => "snapshot.txt",
    auth => "auth.txt",
    concurrency => "concurrency.txt",
}
