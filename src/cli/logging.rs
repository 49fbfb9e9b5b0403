//! The log filter of the `quill` binary: `--log-level` when given, else `RUST_LOG`, else
//! `info`. Either is a level or tracing directives, checked before use: a filter that
//! tracing would accept but that means nothing useful (`verbose` parses as "everything from
//! a module named verbose", which silences the rest) is refused rather than obeyed.

/// The environment variable read when `--log-level` is not given.
pub const LOG_ENV: &str = "RUST_LOG";
/// The filter when neither `--log-level` nor `RUST_LOG` is given.
pub const LOG_LEVEL_DEFAULT: &str = "info";
/// The levels a filter or a directive may name.
pub const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

fn is_level(word: &str) -> bool {
    LEVELS.iter().any(|l| l.eq_ignore_ascii_case(word.trim()))
}

/// Checks a log filter: a level (`debug`), or comma-separated directives each of which is a
/// level or `target=level` (`quill=debug,glommio=warn`, also with tracing's span and field
/// syntax before the `=`). Returns it as given, or why it is refused.
pub fn check_log_filter(spec: &str) -> Result<String, String> {
    let hint = "use off, error, warn, info, debug or trace, or directives such as \
                quill=debug,glommio=warn";
    if spec.trim().is_empty() {
        return Err(format!("the log filter is empty: {hint}"));
    }
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match directive.rsplit_once('=') {
            None if is_level(directive) => {}
            None => return Err(format!("'{directive}' is not a log level: {hint}")),
            Some((target, level)) => {
                if target.trim().is_empty() || !is_level(level) {
                    return Err(format!(
                        "'{directive}' is not a log directive (TARGET=LEVEL): {hint}"
                    ));
                }
            }
        }
    }
    tracing_subscriber::EnvFilter::try_new(spec)
        .map_err(|e| format!("'{spec}' is not a log filter ({e}): {hint}"))?;
    Ok(spec.to_string())
}

/// Where the filter comes from: the flag if given, else `RUST_LOG` if set and not empty,
/// else [`LOG_LEVEL_DEFAULT`]. Errors name their source.
pub fn choose_log_filter(flag: Option<&str>, env: Option<&str>) -> Result<String, String> {
    match (flag, env) {
        (Some(flag), _) => check_log_filter(flag).map_err(|e| format!("--log-level: {e}")),
        (None, Some(env)) if !env.trim().is_empty() => {
            check_log_filter(env).map_err(|e| format!("{LOG_ENV}: {e}"))
        }
        _ => Ok(LOG_LEVEL_DEFAULT.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_pass_other_words_do_not() {
        for ok in [
            "debug",
            "TRACE",
            "off",
            "quill=debug",
            "quill=debug,glommio=warn",
            "warn,quill_client=trace",
            "quill[conn]=debug",
        ] {
            assert_eq!(check_log_filter(ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in [
            "verbose",
            "",
            " ",
            "quill",
            "quill=loud",
            "=debug",
            "info,chatty",
        ] {
            assert!(check_log_filter(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_log_filter("verbose").unwrap_err(),
            "'verbose' is not a log level: use off, error, warn, info, debug or trace, or \
             directives such as quill=debug,glommio=warn"
        );
    }

    #[test]
    fn the_flag_wins_then_the_environment_then_info() {
        assert_eq!(
            choose_log_filter(Some("warn"), Some("debug")).unwrap(),
            "warn"
        );
        assert_eq!(choose_log_filter(None, Some("debug")).unwrap(), "debug");
        assert_eq!(choose_log_filter(None, Some("")).unwrap(), "info");
        assert_eq!(choose_log_filter(None, None).unwrap(), "info");
        assert!(choose_log_filter(None, Some("verbose"))
            .unwrap_err()
            .starts_with("RUST_LOG: 'verbose' is not a log level"));
        // A bad environment does not matter when the flag is given.
        assert_eq!(
            choose_log_filter(Some("info"), Some("verbose")).unwrap(),
            "info"
        );
    }
}
