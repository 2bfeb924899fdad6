//! The configuration parser (`Settings::from_toml`, the path of `--config <file>` and the
//! `TOKENMINT__SECTION__KEY` environment variables) on arbitrary text, then the checks the CLI
//! and server run on the result. None of it may panic, and a secret never shows in `Debug`.
//!
//! Input: the TOML file's text, optionally followed by a NUL byte and environment variables,
//! one `NAME=value` per line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenmint::config::Settings;

/// A master key the environment lines may not contain (so it can be looked for in `Debug`).
const SECRET: &str = "5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2";

fuzz_target!(|data: &[u8]| {
    let (text, env) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let env = String::from_utf8_lossy(env);
    let mut vars: Vec<(String, String)> = env
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let planted = !text.contains(SECRET) && !env.contains(SECRET);
    if planted {
        vars.push(("TOKENMINT__KEYS__MASTER_KEY".into(), SECRET.into()));
    }
    let Ok(settings) = Settings::from_toml(text, vars) else {
        return;
    };
    let _ = settings.validate();
    let _ = settings.validate_server();
    let _ = settings.database_url();
    if planted {
        let shown = format!("{settings:?}");
        assert!(!shown.contains(SECRET), "Debug printed the master key");
    }
});
