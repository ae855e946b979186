//! The logging flags checked as etcd checks them (`embed.setupLogging`):
//! `--logger`, `--log-level`, `--log-outputs`, `--log-format` and the log
//! rotation flags. How hubd then logs is not decided here.

use super::*;

const LOG_LEVELS: &[&str] = &["debug", "info", "warn", "error", "dpanic", "panic", "fatal"];
const DEFAULT_OUTPUT: &str = "default";
const JOURNAL_OUTPUT: &str = "systemd/journal";

/// Checks the logging flags; returns `--log-outputs` (or the deprecated
/// `--log-output`) deduplicated and sorted.
pub(super) fn check_logging(f: &Flags, is_set: impl Fn(&str) -> bool) -> Result<Vec<String>, String> {
    if !matches!(f.logger.as_str(), "capnslog" | "zap") {
        return Err(format!("unknown logger option {}", quote(&f.logger)));
    }
    if !LOG_LEVELS.contains(&f.log_level.as_str()) {
        return Err(format!("unknown level {}", quote(&f.log_level)));
    }
    let outputs = if is_set("log-output") && !is_set("log-outputs") { &f.log_output } else { &f.log_outputs };
    let mut outputs = sorted_unique(outputs.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect());
    let journal = outputs.iter().any(|o| o == JOURNAL_OUTPUT);
    // hubd writes etcd 3.6's zap lines whatever `--logger` says: the format
    // is checked for every logger.
    if !journal && !matches!(f.v36.log_format.as_str(), "json" | "console" | "") {
        return Err(format!("unknown log format: {}, supported values json, console", f.v36.log_format));
    }
    if f.logger == "capnslog" {
        // etcd 3.4's only check for its default logger.
        if outputs.len() != 1 {
            return Err(format!(
                "--logger=capnslog supports only 1 value in '--log-outputs', got {}",
                quote_list(&outputs)
            ));
        }
        return Ok(outputs);
    }
    if outputs.is_empty() {
        outputs.push(DEFAULT_OUTPUT.to_string());
    }
    if outputs.len() > 1 && outputs.iter().any(|o| o == DEFAULT_OUTPUT) {
        return Err(format!("multi logoutput for {} is not supported yet", quote(DEFAULT_OUTPUT)));
    }
    if f.v36.enable_log_rotation {
        check_log_rotation(&outputs, &f.v36.log_rotation_config_json)?;
    }
    if journal && outputs.len() > 1 {
        return Err(format!(
            "running with systemd/journal but other '--log-outputs' values ({}) are configured with 'default'; \
             override 'default' value with something else",
            quote_list(&outputs)
        ));
    }
    Ok(outputs)
}

/// etcd's `setupLogRotation`: one file among the outputs, and a JSON object
/// that fits lumberjack's settings.
fn check_log_rotation(outputs: &[String], json: &str) -> Result<(), String> {
    const NOT_ONE_FILE: &str = "--log-outputs requires a single file path when --log-rotate-config-json is defined";
    let files = outputs.iter().filter(|o| !matches!(o.as_str(), DEFAULT_OUTPUT | "stderr" | "stdout")).count();
    if (outputs.len() == 1 && files == 0) || files > 1 {
        return Err(NOT_ONE_FILE.to_string());
    }
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
        let reason = match e.classify() {
            serde_json::error::Category::Eof => "unexpected end of JSON input".to_string(),
            _ => e.to_string(),
        };
        format!("improperly formatted log rotation config: {reason}")
    })?;
    let invalid = |what: String| format!("invalid log rotation config: json: cannot unmarshal {what}");
    let fields = match value {
        serde_json::Value::Null => return Ok(()),
        serde_json::Value::Object(fields) => fields,
        other => return Err(invalid(format!("{} into Go value of type embed.logRotationConfig", json_kind(&other)))),
    };
    // lumberjack.Logger's fields; Go matches JSON keys to them ignoring case.
    const FIELDS: &[(&str, &str)] = &[
        ("filename", "string"),
        ("maxsize", "int"),
        ("maxage", "int"),
        ("maxbackups", "int"),
        ("localtime", "bool"),
        ("compress", "bool"),
    ];
    for (key, v) in &fields {
        let Some(&(name, ty)) = FIELDS.iter().find(|(n, _)| n.eq_ignore_ascii_case(key)) else { continue };
        let fits = match (ty, v) {
            (_, serde_json::Value::Null) => true,
            ("string", serde_json::Value::String(_)) | ("bool", serde_json::Value::Bool(_)) => true,
            ("int", serde_json::Value::Number(n)) => n.is_i64(),
            _ => false,
        };
        if !fits {
            // Go names the number only when it does not fit an int.
            let kind = match v {
                serde_json::Value::Number(n) if ty == "int" => format!("number {n}"),
                other => json_kind(other).to_string(),
            };
            return Err(invalid(format!("{kind} into Go struct field logRotationConfig.Logger.{name} of type {ty}")));
        }
    }
    Ok(())
}

/// The name Go's JSON errors give a value's kind.
fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Go's `%q` of a string.
fn quote(s: &str) -> String {
    hub_go::quote(s.as_bytes())
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}
