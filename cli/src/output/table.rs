//! `-w table`, and the rows `-w simple` joins with ", ".
//!
//! etcdctl draws tables with olekukonko/tablewriter: upper-cased centred
//! headers, right-aligned cells, and cells wider than 30 columns wrapped at
//! spaces with its minimum-raggedness algorithm. [`render`] reproduces that.

use std::io::{self, Write};

use hub_proto::etcdserverpb::MemberListResponse;
use hub_store::snapshot::SnapshotInfo;

use super::{EndpointHashKv, EndpointHealth, EndpointStatus};
use crate::gofmt;

pub type Rows = Vec<Vec<String>>;

pub fn member_list_rows(r: &MemberListResponse) -> (Vec<&'static str>, Rows) {
    let header = vec!["ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"];
    let rows = r
        .members
        .iter()
        .map(|m| {
            vec![
                format!("{:x}", m.id),
                if m.name.is_empty() { "unstarted" } else { "started" }.to_string(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect();
    (header, rows)
}

pub fn endpoint_health_rows(list: &[EndpointHealth]) -> (Vec<&'static str>, Rows) {
    let header = vec!["endpoint", "health", "took", "error"];
    let rows =
        list.iter().map(|h| vec![h.endpoint.clone(), h.health.to_string(), h.took.clone(), h.error.clone()]).collect();
    (header, rows)
}

pub fn endpoint_status_rows(list: &[EndpointStatus]) -> (Vec<&'static str>, Rows) {
    let header = vec![
        "endpoint",
        "ID",
        "version",
        "db size",
        "is leader",
        "is learner",
        "raft term",
        "raft index",
        "raft applied index",
        "errors",
    ];
    let rows = list
        .iter()
        .map(|ep| {
            let s = &ep.status;
            let member_id = s.header.as_ref().map(|h| h.member_id).unwrap_or(0);
            vec![
                ep.endpoint.clone(),
                format!("{member_id:x}"),
                s.version.clone(),
                gofmt::humanize_bytes(s.db_size.max(0) as u64),
                (s.leader == member_id).to_string(),
                s.is_learner.to_string(),
                s.raft_term.to_string(),
                s.raft_index.to_string(),
                s.raft_applied_index.to_string(),
                s.errors.join(", "),
            ]
        })
        .collect();
    (header, rows)
}

pub fn endpoint_hashkv_rows(list: &[EndpointHashKv]) -> (Vec<&'static str>, Rows) {
    let header = vec!["endpoint", "hash"];
    let rows = list.iter().map(|h| vec![h.endpoint.clone(), h.hash.hash.to_string()]).collect();
    (header, rows)
}

/// etcdctl's `makeDBStatusTable`: the hash in hex, the size humanized.
pub fn snapshot_status_rows(s: &SnapshotInfo) -> (Vec<&'static str>, Rows) {
    let header = vec!["hash", "revision", "total keys", "total size"];
    let row = vec![
        format!("{:x}", s.hash),
        s.revision.to_string(),
        s.total_keys.to_string(),
        gofmt::humanize_bytes(s.total_size),
    ];
    (header, vec![row])
}

/// tablewriter's default maximum cell width before wrapping.
const MAX_CELL_WIDTH: usize = 30;

/// Draws the table as tablewriter does with `SetAlignment(ALIGN_RIGHT)`.
pub fn render(out: &mut dyn Write, header: &[&str], rows: &Rows) -> io::Result<()> {
    let mut widths = vec![0usize; header.len()];
    let header_cells: Vec<Vec<String>> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let lines = wrap_cell(&title(h));
            widths[i] = widths[i].max(lines.iter().map(|l| width(l)).max().unwrap_or(0));
            lines
        })
        .collect();
    let row_cells: Vec<Vec<Vec<String>>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(i, cell)| {
                    let lines = wrap_cell(cell);
                    if i < widths.len() {
                        widths[i] = widths[i].max(lines.iter().map(|l| width(l)).max().unwrap_or(0));
                    }
                    lines
                })
                .collect()
        })
        .collect();

    let rule: String = widths.iter().map(|w| format!("+{}", "-".repeat(w + 2))).collect::<String>() + "+\n";
    out.write_all(rule.as_bytes())?;
    write_row(out, &header_cells, &widths, center)?;
    out.write_all(rule.as_bytes())?;
    for row in &row_cells {
        write_row(out, row, &widths, pad_left)?;
    }
    out.write_all(rule.as_bytes())
}

fn write_row(
    out: &mut dyn Write,
    cells: &[Vec<String>],
    widths: &[usize],
    align: fn(&str, usize) -> String,
) -> io::Result<()> {
    let height = cells.iter().map(Vec::len).max().unwrap_or(0);
    for line in 0..height {
        let mut text = String::new();
        for (i, w) in widths.iter().enumerate() {
            // tablewriter pads short cells of a tall row with two spaces.
            let cell = cells.get(i).and_then(|c| c.get(line)).map(String::as_str).unwrap_or("  ");
            text.push_str("| ");
            text.push_str(&align(cell, *w));
            text.push(' ');
        }
        text.push_str("|\n");
        out.write_all(text.as_bytes())?;
    }
    Ok(())
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn center(s: &str, w: usize) -> String {
    let gap = w.saturating_sub(width(s));
    let left = gap / 2;
    format!("{}{}{}", " ".repeat(left), s, " ".repeat(gap - left))
}

fn pad_left(s: &str, w: usize) -> String {
    format!("{}{}", " ".repeat(w.saturating_sub(width(s))), s)
}

/// tablewriter's `Title`: `_` and (non-numeric) `.` become spaces, then upper case.
fn title(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let is_num_or_space = |c: char| c.is_ascii_digit() || c == ' ';
    let mapped: String = chars
        .iter()
        .enumerate()
        .map(|(i, &c)| match c {
            '_' => ' ',
            '.' if (i != 0 && !is_num_or_space(chars[i - 1]))
                || (i + 1 != chars.len() && !is_num_or_space(chars[i + 1])) =>
            {
                ' '
            }
            c => c,
        })
        .collect();
    let trimmed = mapped.trim();
    if trimmed.is_empty() && !name.is_empty() {
        return " ".to_string();
    }
    trimmed.to_uppercase()
}

/// Splits a cell into lines as tablewriter's `parseDimension` does.
fn wrap_cell(cell: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let raw: Vec<&str> = cell.split('\n').collect();
    let max = raw.iter().map(|l| width(l)).max().unwrap_or(0).min(MAX_CELL_WIDTH);
    for (i, para) in raw.iter().enumerate() {
        if i > 0 {
            lines.push(" ".to_string());
        }
        lines.extend(wrap_string(para, max));
    }
    lines
}

/// tablewriter's `WrapString`: minimum-raggedness word wrap at `limit`.
fn wrap_string(s: &str, limit: usize) -> Vec<String> {
    let words: Vec<&str> = s.split(' ').collect();
    let limit = words.iter().map(|w| width(w)).max().unwrap_or(0).max(limit) as i64;
    let n = words.len();
    // length[i][j]: width of words i..=j joined by single spaces.
    let mut length = vec![vec![0i64; n]; n];
    for i in 0..n {
        length[i][i] = width(words[i]) as i64;
        for j in i + 1..n {
            length[i][j] = length[i][j - 1] + 1 + width(words[j]) as i64;
        }
    }
    const PENALTY: i64 = 100_000;
    let mut next_break = vec![0usize; n];
    let mut cost = vec![i64::from(i32::MAX); n];
    for i in (0..n).rev() {
        if length[i][n - 1] <= limit {
            cost[i] = 0;
            next_break[i] = n;
        } else {
            for j in i + 1..n {
                let d = limit - length[i][j - 1];
                let mut c = d * d + cost[j];
                if length[i][j - 1] > limit {
                    c += PENALTY;
                }
                if c < cost[i] {
                    cost[i] = c;
                    next_break[i] = j;
                }
            }
        }
    }
    let mut lines = Vec::new();
    let mut i = 0;
    while i < n {
        lines.push(words[i..next_break[i]].join(" "));
        i = next_break[i];
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_tablewriter() {
        let rows = vec![vec!["127.0.0.1:23790".to_string(), "2867166641".to_string()]];
        let mut out = Vec::new();
        render(&mut out, &["endpoint", "hash"], &rows).expect("render");
        let want = "\
+-----------------+------------+
|    ENDPOINT     |    HASH    |
+-----------------+------------+
| 127.0.0.1:23790 | 2867166641 |
+-----------------+------------+
";
        assert_eq!(String::from_utf8_lossy(&out), want);
    }

    #[test]
    fn long_cells_wrap_at_spaces() {
        let cell = "one two three four five six seven eight nine ten";
        let lines = wrap_cell(cell);
        assert!(lines.len() > 1, "{lines:?}");
        assert!(lines.iter().all(|l| l.len() <= MAX_CELL_WIDTH), "{lines:?}");
        assert_eq!(lines.join(" "), cell);
    }

    #[test]
    fn titles_upper_case_and_replace_separators() {
        assert_eq!(title("raft applied index"), "RAFT APPLIED INDEX");
        assert_eq!(title("db_size"), "DB SIZE");
    }
}
