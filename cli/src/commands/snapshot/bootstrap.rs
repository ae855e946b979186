//! The membership flags of `snapshot restore`, checked as etcd checks them
//! (`types.NewURLs`, `types.NewURLsMap`, `ServerConfig.VerifyBootstrap`) with
//! etcd's error texts, and the member and cluster IDs etcd derives from them
//! (`membership.NewMember`, `RaftCluster.genID`).
//!
//! hub writes none of this into the restored data directory: hubd bootstraps
//! its membership from its own flags on first start. Restore checks them so a
//! mistake shows up at restore time, as with etcdctl, and logs the IDs hubd
//! will take when started with the same flags.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, ToSocketAddrs};

use hub_raft::membership::{etcd_cluster_id, etcd_member_id};

use crate::gofmt::{quote, quote_list};

/// The cluster `--initial-cluster` describes.
#[derive(Debug, PartialEq)]
pub struct Cluster {
    pub id: u64,
    /// Ordered by member ID, as etcd adds them.
    pub members: Vec<Member>,
}

#[derive(Debug, PartialEq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    /// Sorted.
    pub peer_urls: Vec<String>,
}

/// Checks `--name`, `--initial-cluster`, `--initial-advertise-peer-urls` (`advertise`,
/// comma-separated) and `--initial-cluster-token` as `etcdctl snapshot restore` does.
pub fn verify(name: &str, initial_cluster: &str, advertise: &str, token: &str) -> Result<Cluster, String> {
    let peer_urls = parse_urls(advertise.split(','))?;
    let mut urls_map = BTreeMap::new();
    for (member, urls) in parse_initial_cluster(initial_cluster) {
        urls_map.insert(member, parse_urls(urls.iter().map(String::as_str))?);
    }

    // VerifyBootstrap
    let Some(local) = urls_map.get(name) else {
        return Err(format!(
            "couldn't find local name {} in the initial cluster configuration",
            quote(name.as_bytes())
        ));
    };
    advertise_matches_cluster(name, &peer_urls, local)?;
    let all: Vec<&String> = urls_map.values().flatten().collect();
    if all.iter().collect::<BTreeSet<_>>().len() != all.len() {
        return Err(format!("initial cluster {} has duplicate url", urls_map_string(&urls_map)));
    }

    let mut members: Vec<Member> = urls_map
        .into_iter()
        .map(|(name, peer_urls)| Member { id: etcd_member_id(&peer_urls, token, None), name, peer_urls })
        .collect();
    members.sort_by_key(|m| m.id);
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    Ok(Cluster { id: etcd_cluster_id(&ids), members })
}

/// `types.NewURLsMap`'s parsing: `name=url` pairs separated by commas; a
/// name may come several times, an entry without `=` has an empty URL.
fn parse_initial_cluster(s: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in s.split(',').filter(|e| !e.is_empty()) {
        let (name, url) = entry.split_once('=').unwrap_or((entry, ""));
        map.entry(name.to_string()).or_default().push(url.to_string());
    }
    map
}

/// `types.NewURLs`: every URL valid, the list sorted.
fn parse_urls<'a>(raw: impl Iterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let mut urls = raw.map(parse_url).collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err("no valid URLs given".into());
    }
    urls.sort();
    Ok(urls)
}

/// One peer URL as etcd accepts it: http, https, unix or unixs, a
/// `host:port`, no path. Returns it as Go's `url.URL.String()` writes it.
fn parse_url(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    let bad_scheme = || format!("URL scheme must be http, https, unix, or unixs: {s}");
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(bad_scheme());
    };
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https" | "unix" | "unixs") {
        return Err(bad_scheme());
    }
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..host_end];
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if split_host_port(host).is_none() {
        return Err(format!("URL address does not have the form \"host:port\": {s}"));
    }
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    if host_end < path_end {
        return Err(format!("URL must not contain a path: {s}"));
    }
    Ok(format!("{scheme}://{rest}"))
}

/// Go's `net.SplitHostPort`: `host:port` or `[host]:port`.
fn split_host_port(hostport: &str) -> Option<(&str, &str)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return (!port.contains(':')).then_some((host, port));
    }
    let (host, port) = hostport.rsplit_once(':')?;
    (!host.contains([':', '[', ']']) && !port.contains([']', '['])).then_some((host, port))
}

/// `ServerConfig.advertiseMatchesCluster`: this member's URLs in
/// `--initial-cluster` are its `--initial-advertise-peer-urls`, possibly
/// after resolving host names.
fn advertise_matches_cluster(name: &str, advertised: &[String], in_cluster: &[String]) -> Result<(), String> {
    let Err(why) = urls_equal(advertised, in_cluster) else {
        return Ok(());
    };
    let advertised_set: BTreeSet<&String> = advertised.iter().collect();
    let cluster_set: BTreeSet<&String> = in_cluster.iter().collect();
    let joined = advertised.join(",");
    let only_in_cluster: Vec<String> = cluster_set.difference(&advertised_set).map(|u| format!("{name}={u}")).collect();
    if !only_in_cluster.is_empty() {
        return Err(format!(
            "--initial-cluster has {} but missing from --initial-advertise-peer-urls={joined} ({why})",
            only_in_cluster.join(",")
        ));
    }
    let own = advertised.iter().map(|u| format!("{name}={u}")).collect::<Vec<_>>().join(",");
    let only_advertised: Vec<&str> = advertised_set.difference(&cluster_set).map(|u| u.as_str()).collect();
    if !only_advertised.is_empty() {
        return Err(format!(
            "--initial-advertise-peer-urls has {} but missing from --initial-cluster={own}",
            only_advertised.join(",")
        ));
    }
    Err(format!("failed to resolve {joined} to match --initial-cluster={own} ({why})"))
}

/// `netutil.URLStringsEqual` for sorted lists: equal as written, or once
/// host names (not `localhost`, not IP addresses) are resolved.
fn urls_equal(a: &[String], b: &[String]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("len({}) != len({})", quote_list(a), quote_list(b)));
    }
    if a == b {
        return Ok(());
    }
    let mut a = a.iter().map(|u| resolve(u)).collect::<Result<Vec<_>, _>>()?;
    let mut b = b.iter().map(|u| resolve(u)).collect::<Result<Vec<_>, _>>()?;
    a.sort();
    b.sort();
    match a.iter().zip(&b).find(|(x, y)| x != y) {
        Some((x, y)) => Err(format!("resolved urls: {} != {}", quote(x.as_bytes()), quote(y.as_bytes()))),
        None => Ok(()),
    }
}

/// A URL with its host name replaced by the address it resolves to.
fn resolve(url: &str) -> Result<String, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(url.to_string());
    };
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let hostport = &rest[..host_end];
    let Some((host, _)) = split_host_port(hostport) else {
        return Ok(url.to_string());
    };
    if matches!(scheme, "unix" | "unixs") || host == "localhost" || host.parse::<IpAddr>().is_ok() {
        return Ok(url.to_string());
    }
    let failed = |e: String| format!("failed to resolve {} ({e})", quote(url.as_bytes()));
    let addrs: Vec<_> = hostport.to_socket_addrs().map_err(|e| failed(e.to_string()))?.collect();
    // Go's resolver prefers an IPv4 address.
    let addr = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).ok_or_else(|| failed("no address".into()))?;
    Ok(format!("{scheme}://{addr}{}", &rest[host_end..]))
}

/// `types.URLsMap.String()`: sorted `name=url` pairs.
fn urls_map_string(map: &BTreeMap<String, Vec<String>>) -> String {
    let mut pairs: Vec<String> =
        map.iter().flat_map(|(name, urls)| urls.iter().map(move |u| format!("{name}={u}"))).collect();
    pairs.sort();
    pairs.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_etcds() {
        // What `etcdctl snapshot restore` logs for these flags ("added member").
        let c = verify("default", "default=http://localhost:2380", "http://localhost:2380", "etcd-cluster")
            .expect("defaults");
        assert_eq!(format!("{:x}", c.id), "cdf818194e3a8c32");
        assert_eq!(format!("{:x}", c.members[0].id), "8e9e05c52164694d");
        let c = verify("n1", "n1=http://127.0.0.1:23802", "http://127.0.0.1:23802", "tok").expect("n1");
        assert_eq!(
            (format!("{:x}", c.id), format!("{:x}", c.members[0].id)),
            ("579590e908d4cea4".to_string(), "2737ecedbf2a9065".to_string())
        );
    }

    #[test]
    fn mistakes_read_as_etcd_words_them() {
        let cases = [
            (
                ("n1", "default=http://localhost:2380", "http://localhost:2380"),
                r#"couldn't find local name "n1" in the initial cluster configuration"#,
            ),
            (("n1", "n1=http://a:1", "localhost:2380"), "URL scheme must be http, https, unix, or unixs: localhost:2380"),
            (("n1", "n1=http://a", "http://a:1"), r#"URL address does not have the form "host:port": http://a"#),
            (("n1", "n1=http://a:1/x", "http://a:1"), "URL must not contain a path: http://a:1/x"),
            (
                ("n1", "n1=http://127.0.0.1:1", "http://127.0.0.1:2"),
                r#"--initial-cluster has n1=http://127.0.0.1:1 but missing from --initial-advertise-peer-urls=http://127.0.0.1:2 (resolved urls: "http://127.0.0.1:2" != "http://127.0.0.1:1")"#,
            ),
            (
                ("n1", "n1=http://127.0.0.1:1", "http://127.0.0.1:1,http://127.0.0.1:2"),
                "--initial-advertise-peer-urls has http://127.0.0.1:2 but missing from --initial-cluster=n1=http://127.0.0.1:1,n1=http://127.0.0.1:2",
            ),
            (
                ("n1", "n1=http://127.0.0.1:1,n2=http://127.0.0.1:1", "http://127.0.0.1:1"),
                "initial cluster n1=http://127.0.0.1:1,n2=http://127.0.0.1:1 has duplicate url",
            ),
        ];
        for ((name, cluster, advertise), want) in cases {
            assert_eq!(verify(name, cluster, advertise, "t"), Err(want.to_string()), "{name} {cluster} {advertise}");
        }
    }

    #[test]
    fn members_are_ordered_by_id_and_urls_sorted() {
        let c = verify("b", "b=http://h:2,a=http://h:1,b=http://g:2", "http://g:2,http://h:2", "t").expect("valid");
        assert_eq!(c.members.len(), 2);
        assert!(c.members[0].id < c.members[1].id);
        let b = c.members.iter().find(|m| m.name == "b").expect("b");
        assert_eq!(b.peer_urls, ["http://g:2", "http://h:2"]);
    }
}
