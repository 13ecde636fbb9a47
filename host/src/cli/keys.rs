//! `airlock keys`: the host's envelope signing keys.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

use crate::envelope::{KeyInfo, KeyRing};

/// The largest envelope lifetime a tool's limits allow (a 600 s timeout plus
/// the host's 30 s of slack): when no lifetime is given, a key counts as
/// expired only once no envelope it signed can still be valid.
const DEFAULT_MAX_ENVELOPE_LIFETIME_SECS: u64 = 630;

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Make a new signing key the active one and retire the current one.
    /// Running hosts switch within a second; the retired key stays published
    /// until every envelope it signed has expired.
    Rotate {
        /// The host's data directory (`data_dir` in the configuration).
        #[arg(long, default_value = "data")]
        data: PathBuf,
    },
    /// List the signing keys: id, creation time, state.
    List {
        /// The host's data directory (`data_dir` in the configuration).
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// The longest lifetime an envelope can have, in seconds: a retired
        /// key is expired (dropped from the JWKS) once this has passed.
        #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_MAX_ENVELOPE_LIFETIME_SECS)]
        max_envelope_lifetime: u64,
    },
}

pub(crate) fn run(cmd: KeysCommand, out: &mut (dyn Write + Send)) -> Result<(), String> {
    match cmd {
        KeysCommand::Rotate { data } => {
            let dir = KeyRing::dir_in(&data);
            let key = KeyRing::rotate(&dir).map_err(|e| e.to_string())?;
            let _ = writeln!(out, "{}", line(&key, now(), 0));
            Ok(())
        }
        KeysCommand::List {
            data,
            max_envelope_lifetime,
        } => {
            let keys = KeyRing::list(&KeyRing::dir_in(&data)).map_err(|e| e.to_string())?;
            let now = now();
            for key in keys.iter().rev() {
                let _ = writeln!(out, "{}", line(key, now, max_envelope_lifetime));
            }
            Ok(())
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `kid  created  state`.
fn line(key: &KeyInfo, now: u64, max_envelope_lifetime: u64) -> String {
    let state = match (key.retired_at, key.published_until(max_envelope_lifetime)) {
        (Some(at), Some(until)) if now > until => format!("expired (retired {})", rfc3339(at)),
        (Some(at), _) => format!("retired at {}", rfc3339(at)),
        (None, _) => "active".to_string(),
    };
    format!("{}  {}  {state}", key.kid, rfc3339(key.created_at))
}

/// Seconds since the Unix epoch as RFC 3339 UTC (`2024-01-31T12:00:00Z`).
pub(super) fn rfc3339(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Days to a proleptic Gregorian date, counting in 400-year eras from
    // 0000-03-01 (H. Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (951_868_799, "2000-02-29T23:59:59Z"),
            (951_868_800, "2000-03-01T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
        ] {
            assert_eq!(rfc3339(secs), text);
        }
    }

    #[test]
    fn states() {
        let key = |retired_at| KeyInfo {
            kid: "k".into(),
            created_at: 0,
            retired_at,
            active: retired_at.is_none(),
        };
        assert_eq!(line(&key(None), 10, 5), "k  1970-01-01T00:00:00Z  active");
        let retired = key(Some(60));
        let until = retired.published_until(5).unwrap();
        assert_eq!(
            line(&retired, until, 5),
            "k  1970-01-01T00:00:00Z  retired at 1970-01-01T00:01:00Z"
        );
        assert_eq!(
            line(&retired, until + 1, 5),
            "k  1970-01-01T00:00:00Z  expired (retired 1970-01-01T00:01:00Z)"
        );
    }

    #[tokio::test]
    async fn rotate_and_list() {
        let data = tempfile::tempdir().unwrap();
        let data_arg = data.path().to_str().unwrap();
        let run = |args: &'static [&'static str]| {
            let args: Vec<String> = ["airlock", "keys"]
                .iter()
                .chain(args)
                .map(|s| s.to_string())
                .chain(["--data".to_string(), data_arg.to_string()])
                .collect();
            async move {
                let (mut out, mut err) = (Vec::new(), Vec::new());
                let code = crate::cli::run(args, &mut out, &mut err).await;
                (
                    code,
                    String::from_utf8(out).unwrap(),
                    String::from_utf8(err).unwrap(),
                )
            }
        };
        // No ring yet: nothing is created.
        let (code, _, err) = run(&["rotate"]).await;
        assert_eq!(code, 1);
        assert!(err.contains("no key ring at"), "{err}");
        assert!(!data.path().join("keys").exists());

        let first = KeyRing::open(&KeyRing::dir_in(data.path()))
            .unwrap()
            .active_kid();
        let (code, out, _) = run(&["rotate"]).await;
        assert_eq!(code, 0);
        let second = out.split_whitespace().next().unwrap().to_string();
        assert_ne!(second, first);
        assert!(out.trim_end().ends_with("active"), "{out}");

        let (code, out, _) = run(&["list"]).await;
        assert_eq!(code, 0);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with(&second) && lines[0].ends_with("  active"));
        assert!(lines[1].starts_with(&first) && lines[1].contains("  retired at "));
    }
}
